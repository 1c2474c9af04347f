from mlpipe.core.diff import Unknown, diff, policy, show, tags_from_list, tags_to_list


def test_unmanaged_keys_are_not_compared() -> None:
    current = {"A": 1, "B": {"x": 1, "y": 2}, "Extra": 5}
    assert not diff(current, {"A": 1, "B": {"x": 1}, "C": None})


def test_changes_carry_paths_and_replacement() -> None:
    changes = diff(
        {"Key": "a", "Nested": {"Size": 1}}, {"Key": "b", "Nested": {"Size": 2}}, replace_on=["Key"]
    )
    assert [(c.path, c.before, c.after, c.replace) for c in changes.changes] == [
        ("Key", "a", "b", True),
        ("Nested.Size", 1, 2, False),
    ]
    assert changes.replace and changes.touches("Nested") and not changes.touches("Nest")


def test_ignored_paths_and_exact_tags() -> None:
    assert not diff({"Value": "live"}, {"Value": "seed"}, ignore=["Value"])
    changes = diff({"Tags": {"a": "1", "stale": "x"}}, {"Tags": {"a": "1"}})
    assert changes.paths() == ["Tags"]


def test_unknown_always_differs_and_renders() -> None:
    changes = diff({"Arn": "arn:x"}, {"Arn": Unknown("kms:key.arn")})
    assert changes.paths() == ["Arn"]
    assert show(changes.changes[0].after) == "(known after apply)"


def test_policy_normalisation_makes_equivalent_documents_equal() -> None:
    a = {
        "Statement": [
            {"Sid": "B", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:b"},
            {"Sid": "A", "Effect": "Allow", "Action": ["x:B", "x:A"], "Resource": ["r2", "r1"]},
        ]
    }
    b = (
        '{"Version": "2012-10-17", "Statement": ['
        '{"Sid": "A", "Effect": "Allow", "Action": ["x:A", "x:B"], "Resource": ["r1", "r2"]},'
        '{"Sid": "B", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:b"]}]}'
    )
    assert policy(a) == policy(b)
    assert policy(None) is None


def test_tags_round_trip_without_aws_tags() -> None:
    items = [{"Key": "b", "Value": "2"}, {"Key": "aws:cloudformation:x", "Value": "y"}]
    assert tags_from_list(items) == {"b": "2"}
    assert tags_to_list({"b": "2", "a": "1"}, "TagKey", "TagValue") == [
        {"TagKey": "a", "TagValue": "1"},
        {"TagKey": "b", "TagValue": "2"},
    ]
