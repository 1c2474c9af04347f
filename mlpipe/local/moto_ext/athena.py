"""Athena ``UpdateWorkGroup`` in the embedded AWS (moto lacks it)."""

from __future__ import annotations

import json
from typing import Any

from moto.athena.models import AthenaBackend
from moto.athena.responses import AthenaResponse
from moto.core.exceptions import JsonRESTError

from mlpipe.local.moto_ext import install_declared, new_method


class _AthenaInvalidRequest(JsonRESTError):
    code = 400

    def __init__(self, message: str, athena_error_code: str = "INVALID_INPUT"):
        super().__init__("InvalidRequestException", message)
        body = {
            "__type": "InvalidRequestException",
            "Message": message,
            "AthenaErrorCode": athena_error_code,
        }
        self.description = json.dumps(body)


# ConfigurationUpdates members copied as given into the workgroup's Configuration.
_WORKGROUP_SETTINGS = (
    "EnforceWorkGroupConfiguration",
    "PublishCloudWatchMetricsEnabled",
    "BytesScannedCutoffPerQuery",
    "RequesterPaysEnabled",
    "AdditionalConfiguration",
    "ExecutionRole",
    "CustomerContentEncryptionConfiguration",
    "EnableMinimumEncryptionConfiguration",
    "QueryResultsS3AccessGrantsConfiguration",
    "MonitoringConfiguration",
    "EngineConfiguration",
)
# Members that a Remove<Member> flag deletes, per nested update structure.
_REMOVABLE = {
    "": ("BytesScannedCutoffPerQuery", "CustomerContentEncryptionConfiguration"),
    "ResultConfiguration": (
        "OutputLocation",
        "EncryptionConfiguration",
        "ExpectedBucketOwner",
        "AclConfiguration",
    ),
    "ManagedQueryResultsConfiguration": ("EncryptionConfiguration",),
}


def _apply_removals(
    target: dict[str, Any], updates: dict[str, Any], names: tuple[str, ...]
) -> None:
    for name in names:
        if updates.get(f"Remove{name}"):
            target.pop(name, None)
        elif name in updates:
            target[name] = updates[name]


def _engine_version(selected: str) -> dict[str, str]:
    effective = "Athena engine version 3" if selected == "AUTO" else selected
    return {"SelectedEngineVersion": selected, "EffectiveEngineVersion": effective}


@new_method(AthenaBackend, "update_work_group")
def _update_work_group(
    self: AthenaBackend,
    name: str,
    description: str | None,
    configuration_updates: dict[str, Any] | None,
    state: str | None,
) -> None:
    work_group = self.work_groups.get(name)
    if work_group is None:
        raise _AthenaInvalidRequest("WorkGroup is not found.")
    if description is not None:
        work_group.description = description
    if state is not None:
        work_group.state = state
    updates = configuration_updates or {}
    configuration = work_group.configuration
    for key in _WORKGROUP_SETTINGS:
        if key in updates:
            configuration[key] = updates[key]
    _apply_removals(configuration, updates, _REMOVABLE[""])
    for section in ("ResultConfiguration", "ManagedQueryResultsConfiguration"):
        section_updates = updates.get(f"{section}Updates")
        if section_updates is None:
            continue
        target = configuration.setdefault(section, {})
        if "Enabled" in section_updates:
            target["Enabled"] = section_updates["Enabled"]
        _apply_removals(target, section_updates, _REMOVABLE[section])
    if "EngineVersion" in updates:
        selected = updates["EngineVersion"].get("SelectedEngineVersion", "AUTO")
        configuration["EngineVersion"] = _engine_version(selected)


@new_method(AthenaResponse, "update_work_group")
def _update_work_group_action(self: AthenaResponse) -> str:
    self.athena_backend.update_work_group(
        name=self._get_param("WorkGroup"),
        description=self._get_param("Description"),
        configuration_updates=self._get_param("ConfigurationUpdates"),
        state=self._get_param("State"),
    )
    return "{}"


def install() -> None:
    install_declared(__name__)
