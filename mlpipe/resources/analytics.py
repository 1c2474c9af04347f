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
from typing import Any, ClassVar

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.iam import role_key
from mlpipe.resources.kms import KEY

DATABASE = "glue:database"
CRAWLER = "glue:crawler"
WORKGROUP = "athena:workgroup"

CRAWLER_ROLE = role_key("glue-crawler")
PREDICTIONS_PREFIX = "predictions/"
RESULTS_PREFIX = "athena-results/"


class AnalyticsResource(Resource):
    """A Glue catalog object or the Athena workgroup: named, and tagged by its ARN."""

    type: ClassVar[str]  # the resource type in its ARN

    @property
    def arn(self) -> str:
        aws = self.ctx.aws
        return (
            f"arn:{aws.partition}:{self.kind}:{aws.region}:{aws.account}:"
            f"{self.type}/{self.physical}"
        )

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": self.arn}

    def _observed(self, state: dict[str, Any]) -> Observed:
        tags = self.live_tags(self.arn)
        return Observed({**state, "Tags": tags}, self._outputs(), self.ctx.owns(tags))


# --- Glue ---------------------------------------------------------------------------------------


class Database(AnalyticsResource):
    kind, tagging, type = "glue", "glue", "database"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "database", ctx.names.glue_database)

    def read(self) -> Observed | None:
        found = self.find("glue", "get_database", Name=self.physical)
        if found is None:
            return None
        return self._observed({"Description": found["Database"].get("Description", "")})

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
        self.client("glue").update_database(
            Name=self.physical,
            DatabaseInput={"Name": self.physical, "Description": desired["Description"]},
        )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        forget(self.client("glue"), "delete_database", Name=self.physical)


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


class Crawler(AnalyticsResource):
    kind, tagging, type = "glue", "glue", "crawler"
    exact = ("Tags", "Targets", "Configuration")

    def __init__(self, ctx: Context) -> None:
        # It crawls the data bucket: created after it, deleted before it.
        super().__init__(
            ctx, "crawler", ctx.names.crawler, depends_on=(DATABASE, CRAWLER_ROLE, DATA_BUCKET)
        )

    def read(self) -> Observed | None:
        found = self.find("glue", "get_crawler", Name=self.physical)
        if found is None:
            return None
        crawler = found["Crawler"]
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
        # A running crawl refuses updates until it finishes.
        self.ctx.eventually(
            lambda: glue.update_crawler(Name=self.physical, **params), "glue-crawler-running"
        )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        glue = self.client("glue")
        found = self.find("glue", "get_crawler", Name=self.physical)
        if found is None:
            return
        if found["Crawler"].get("State") == "RUNNING":
            self.ctx.progress(self.key, "stopping the running crawl")
            glue.stop_crawler(Name=self.physical)
        # A crawl still stopping refuses the delete until it has stopped.
        self.ctx.eventually(
            lambda: forget(glue, "delete_crawler", Name=self.physical), "glue-crawler-running"
        )


# --- Athena -------------------------------------------------------------------------------------

WORKGROUP_SETTINGS = (
    "EnforceWorkGroupConfiguration",
    "PublishCloudWatchMetricsEnabled",
    "BytesScannedCutoffPerQuery",
)
RESULT_SETTINGS = ("OutputLocation", "EncryptionConfiguration", "ExpectedBucketOwner")


class Workgroup(AnalyticsResource):
    kind, tagging, type = "athena", "athena", "workgroup"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "workgroup", ctx.names.workgroup, depends_on=(KEY,))

    def read(self) -> Observed | None:
        found = self.find("athena", "get_work_group", WorkGroup=self.physical)
        group = (found or {}).get("WorkGroup")
        if not group:  # the embedded AWS answers a missing name with an empty 200
            return None
        config = group.get("Configuration") or {}
        results = config.get("ResultConfiguration") or {}
        return self._observed(
            {
                "Description": group.get("Description", ""),
                "State": group.get("State"),
                "Configuration": {
                    "ResultConfiguration": {k: results.get(k) for k in RESULT_SETTINGS},
                    "EnforceWorkGroupConfiguration": config.get(
                        "EnforceWorkGroupConfiguration", False
                    ),
                    "PublishCloudWatchMetricsEnabled": config.get(
                        "PublishCloudWatchMetricsEnabled", False
                    ),
                    "BytesScannedCutoffPerQuery": config.get("BytesScannedCutoffPerQuery"),
                },
            }
        )

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
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        forget(
            self.client("athena"),
            "delete_work_group",
            WorkGroup=self.physical,
            RecursiveDeleteOption=True,
        )

    def warnings(self) -> list[str]:
        if self.ctx.spec.analytics.bytes_scanned_cutoff is None:
            return [
                "no analytics.bytes_scanned_cutoff: a single query can scan (and bill) the "
                "whole data bucket"
            ]
        return []


def resources(ctx: Context) -> list[Resource]:
    return [Database(ctx), Crawler(ctx), Workgroup(ctx)]
