"""Analytics: the Glue database, the crawler that catalogues predictions, the Athena workgroup.

Athena queries data in S3 (other sources only through a federated Lambda connector): it cannot
query a DynamoDB table. The queryable source is therefore the batch job's prediction outputs in
`s3://<data bucket>/predictions/`, which the crawler catalogues nightly as a table of the Glue
database. With `analytics.crawl_dynamodb` (as in the reference design) the crawler also records
the predictions table's schema in the catalog, from a sample rather than a full scan: that entry
documents the table for Glue jobs, but an Athena query on it fails without a DynamoDB connector.

Query results go to `s3://<data bucket>/athena-results/`, encrypted with the pipeline's key
(SSE_KMS). The workgroup enforces its configuration, so no client can send results elsewhere or
unencrypted; it publishes CloudWatch metrics and cancels a query that scans more than
`analytics.bytes_scanned_cutoff` bytes.

The data bucket and the predictions table are referred to by their derived names, so analytics
stands alone.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, sync_tags, tags_to_list, without_aws_tags
from mlpipe.core.errors import error_code, is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.iam import role_key
from mlpipe.resources.kms import KEY

DATABASE = "glue:database"
CRAWLER = "glue:crawler"
WORKGROUP = "athena:workgroup"

CRAWLER_ROLE = role_key("glue-crawler")
PREDICTIONS_PREFIX = "predictions/"
RESULTS_PREFIX = "athena-results/"


def _arn(ctx: Context, service: str, resource: str) -> str:
    aws = ctx.aws
    return f"arn:{aws.partition}:{service}:{aws.region}:{aws.account}:{resource}"


# --- Glue ---------------------------------------------------------------------------------------


class GlueResource(Resource):
    """A Glue catalog object: tags as a map, through GetTags/TagResource/UntagResource."""

    kind = "glue"

    @property
    def arn(self) -> str:
        raise NotImplementedError

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": self.arn}

    def _tags(self) -> dict[str, str]:
        return without_aws_tags(self.client("glue").get_tags(ResourceArn=self.arn).get("Tags"))

    def _sync_tags(self, observed: Observed, desired: dict[str, Any]) -> None:
        glue = self.client("glue")
        sync_tags(
            observed.state["Tags"],
            desired["Tags"],
            lambda t: glue.tag_resource(ResourceArn=self.arn, TagsToAdd=t),
            lambda keys: glue.untag_resource(ResourceArn=self.arn, TagsToRemove=keys),
        )

    def _observed(self, state: dict[str, Any]) -> Observed:
        tags = self._tags()
        return Observed({**state, "Tags": tags}, self._outputs(), self.ctx.owns(tags))


class Database(GlueResource):
    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "database", ctx.names.glue_database)

    @property
    def arn(self) -> str:
        return _arn(self.ctx, "glue", f"database/{self.physical}")

    def read(self) -> Observed | None:
        try:
            database = self.client("glue").get_database(Name=self.physical)["Database"]
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        return self._observed({"Description": database.get("Description", "")})

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: prediction results catalog",
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.client("glue").create_database(
            DatabaseInput={"Name": self.physical, "Description": desired["Description"]},
            Tags=desired["Tags"],
        )
        return self._outputs()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        if changes.touches("Description"):
            self.client("glue").update_database(
                Name=self.physical,
                DatabaseInput={"Name": self.physical, "Description": desired["Description"]},
            )
        if changes.touches("Tags"):
            self._sync_tags(observed, desired)
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.client("glue").delete_database(Name=self.physical)
        except ClientError as exc:
            if not is_not_found(exc):
                raise


def _target(kind: str, target: dict[str, Any]) -> dict[str, Any]:
    """One crawler target in the shape mlpipe writes (AWS fills in defaults)."""
    if kind == "S3Targets":
        return {"Path": target["Path"], "Exclusions": sorted(target.get("Exclusions") or [])}
    if kind == "DynamoDBTargets":
        out = {"Path": target["Path"], "scanAll": target.get("scanAll", True)}
        if target.get("scanRate") is not None:
            out["scanRate"] = target["scanRate"]
        return out
    return target


def crawler_targets(targets: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Targets without the empty kinds AWS lists, each list in path order."""
    return {
        kind: sorted((_target(kind, t) for t in items), key=lambda t: str(t.get("Path", t)))
        for kind, items in targets.items()
        if items
    }


# Crawler properties UpdateCrawler takes, as mlpipe compares them.
CRAWLER_FIELDS = (
    "Role",
    "DatabaseName",
    "Description",
    "Targets",
    "Schedule",
    "SchemaChangePolicy",
    "RecrawlPolicy",
    "Configuration",
)


DATA_BUCKET = "s3:data"


class Crawler(GlueResource):
    exact = ("Tags", "Targets", "Configuration")

    def __init__(self, ctx: Context) -> None:
        # It crawls the data bucket: created after it, deleted before it.
        super().__init__(
            ctx, "crawler", ctx.names.crawler, depends_on=(DATABASE, CRAWLER_ROLE, DATA_BUCKET)
        )

    @property
    def arn(self) -> str:
        return _arn(self.ctx, "glue", f"crawler/{self.physical}")

    def read(self) -> Observed | None:
        try:
            crawler = self.client("glue").get_crawler(Name=self.physical)["Crawler"]
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        configuration = crawler.get("Configuration")
        return self._observed(
            {
                "Role": crawler.get("Role"),
                "DatabaseName": crawler.get("DatabaseName"),
                "Description": crawler.get("Description", ""),
                "Targets": crawler_targets(crawler.get("Targets") or {}),
                "Schedule": (crawler.get("Schedule") or {}).get("ScheduleExpression", ""),
                "SchemaChangePolicy": crawler.get("SchemaChangePolicy"),
                "RecrawlPolicy": crawler.get("RecrawlPolicy"),
                "Configuration": json.loads(configuration) if configuration else {},
            }
        )

    def desired(self, refs: Refs) -> dict[str, Any]:
        names, spec = self.ctx.names, self.ctx.spec.analytics
        targets: dict[str, list[dict[str, Any]]] = {
            "S3Targets": [
                {"Path": f"s3://{names.data_bucket}/{PREDICTIONS_PREFIX}", "Exclusions": []}
            ]
        }
        if spec.crawl_dynamodb:
            # A sample gives the schema; a full scan would bill the table's reads every night.
            targets["DynamoDBTargets"] = [{"Path": names.predictions_table, "scanAll": False}]
        return {
            "Role": refs(CRAWLER_ROLE, "arn"),
            "DatabaseName": names.glue_database,
            "Description": f"mlpipe {names.pipeline_id}: catalogues the prediction outputs",
            "Targets": targets,
            "Schedule": spec.crawler_schedule,
            "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
            "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_EVERYTHING"},
            "Configuration": {
                "Version": 1.0,
                # One table for the whole prefix, partitions following the table's schema.
                "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
                "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
            },
            "Tags": self.tags,
        }

    @staticmethod
    def _api(field: str, value: Any) -> Any:
        return json.dumps(value) if field == "Configuration" else value

    def create(self, desired: dict[str, Any]) -> Outputs:
        glue = self.client("glue")
        params = {f: self._api(f, desired[f]) for f in CRAWLER_FIELDS}
        # Glue checks that it can assume the role, which IAM may not have propagated yet.
        self.ctx.eventually(
            lambda: glue.create_crawler(Name=self.physical, Tags=desired["Tags"], **params),
            "glue-role-not-assumable",
        )
        return self._outputs()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        glue = self.client("glue")
        params = {f: self._api(f, desired[f]) for f in CRAWLER_FIELDS if changes.touches(f)}
        if params:
            # A running crawl refuses updates until it finishes.
            self.ctx.eventually(
                lambda: glue.update_crawler(Name=self.physical, **params),
                "glue-crawler-running",
            )
        if changes.touches("Tags"):
            self._sync_tags(observed, desired)
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        glue = self.client("glue")
        try:
            glue.delete_crawler(Name=self.physical)
        except ClientError as exc:
            if is_not_found(exc):
                return
            if error_code(exc) != "CrawlerRunningException":
                raise
            self.ctx.progress(self.key, "stopping the running crawl")
            glue.stop_crawler(Name=self.physical)
            self.ctx.eventually(
                lambda: glue.delete_crawler(Name=self.physical), "glue-crawler-running"
            )


# --- Athena -------------------------------------------------------------------------------------

WORKGROUP_SETTINGS = (
    "EnforceWorkGroupConfiguration",
    "PublishCloudWatchMetricsEnabled",
    "BytesScannedCutoffPerQuery",
)
RESULT_SETTINGS = ("OutputLocation", "EncryptionConfiguration", "ExpectedBucketOwner")


def _workgroup_missing(exc: ClientError) -> bool:
    return error_code(exc) == "InvalidRequestException" and "not found" in str(exc).lower()


class Workgroup(Resource):
    kind = "athena"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "workgroup", ctx.names.workgroup, depends_on=(KEY,))

    @property
    def arn(self) -> str:
        return _arn(self.ctx, "athena", f"workgroup/{self.physical}")

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": self.arn}

    def read(self) -> Observed | None:
        athena = self.client("athena")
        try:
            group = athena.get_work_group(WorkGroup=self.physical).get("WorkGroup")
        except ClientError as exc:
            if _workgroup_missing(exc):
                return None
            raise
        if not group:  # the embedded AWS answers a missing name with an empty 200
            return None
        config = group.get("Configuration") or {}
        results = config.get("ResultConfiguration") or {}
        tags = without_aws_tags(
            {
                t["Key"]: t["Value"]
                for t in athena.list_tags_for_resource(ResourceARN=self.arn).get("Tags", [])
            }
        )
        state = {
            "Description": group.get("Description", ""),
            "State": group.get("State"),
            "Configuration": {
                "ResultConfiguration": {k: results.get(k) for k in RESULT_SETTINGS},
                "EnforceWorkGroupConfiguration": config.get("EnforceWorkGroupConfiguration", False),
                "PublishCloudWatchMetricsEnabled": config.get(
                    "PublishCloudWatchMetricsEnabled", False
                ),
                "BytesScannedCutoffPerQuery": config.get("BytesScannedCutoffPerQuery"),
            },
            "Tags": tags,
        }
        return Observed(state, self._outputs(), self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        names = self.ctx.names
        return {
            "Description": f"mlpipe {names.pipeline_id}: queries over the prediction outputs",
            "State": "ENABLED",
            "Configuration": {
                "ResultConfiguration": {
                    "OutputLocation": f"s3://{names.data_bucket}/{RESULTS_PREFIX}",
                    "EncryptionConfiguration": {
                        "EncryptionOption": "SSE_KMS",
                        "KmsKey": refs(KEY, "arn"),
                    },
                    # Results never land in a bucket of that name owned by another account.
                    "ExpectedBucketOwner": self.ctx.aws.account,
                },
                "EnforceWorkGroupConfiguration": True,
                "PublishCloudWatchMetricsEnabled": True,
                # None: not managed (no cutoff is set, an existing one stays).
                "BytesScannedCutoffPerQuery": self.ctx.spec.analytics.bytes_scanned_cutoff,
            },
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        configuration = {k: v for k, v in desired["Configuration"].items() if v is not None}
        self.client("athena").create_work_group(
            Name=self.physical,
            Description=desired["Description"],
            Configuration=configuration,
            Tags=tags_to_list(desired["Tags"]),
        )
        return self._outputs()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        athena, config = self.client("athena"), desired["Configuration"]
        updates: dict[str, Any] = {
            key: config[key]
            for key in WORKGROUP_SETTINGS
            if changes.touches(f"Configuration.{key}")
        }
        results = {
            key: config["ResultConfiguration"][key]
            for key in RESULT_SETTINGS
            if changes.touches(f"Configuration.ResultConfiguration.{key}")
        }
        if results:
            updates["ResultConfigurationUpdates"] = results
        params: dict[str, Any] = {
            key: desired[key] for key in ("Description", "State") if changes.touches(key)
        }
        if updates:
            params["ConfigurationUpdates"] = updates
        if params:
            athena.update_work_group(WorkGroup=self.physical, **params)
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: athena.tag_resource(ResourceARN=self.arn, Tags=tags_to_list(t)),
                lambda keys: athena.untag_resource(ResourceARN=self.arn, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.client("athena").delete_work_group(
                WorkGroup=self.physical, RecursiveDeleteOption=True
            )
        except ClientError as exc:
            if not _workgroup_missing(exc):
                raise

    def warnings(self) -> list[str]:
        if self.ctx.spec.analytics.bytes_scanned_cutoff is None:
            return [
                "no analytics.bytes_scanned_cutoff: a single query can scan (and bill) the "
                "whole data bucket"
            ]
        return []


def resources(ctx: Context) -> list[Resource]:
    return [Database(ctx), Crawler(ctx), Workgroup(ctx)]
