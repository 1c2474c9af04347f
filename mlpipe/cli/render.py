"""Rendering plans, reports and status as text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from mlpipe.core.diff import show
from mlpipe.core.executor import Outcome, Report, Status
from mlpipe.core.plan import Action, Plan, Step

SYMBOL = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.REPLACE: ("-/+", "magenta"),
    Action.DELETE: ("-", "red"),
    Action.NOOP: (" ", "dim"),
}


def plan_lines(plan: Plan, verbose: bool = False) -> list[str]:
    lines: list[str] = []
    for step in plan.steps:
        if step.action is Action.NOOP and not (verbose or step.notes):
            continue
        symbol, colour = SYMBOL[step.action]
        head = f"[{colour}]{symbol:>3} {escape(step.key)}[/] ({escape(step.resource.physical)})"
        if step.diff.replace:
            forced = ", ".join(c.path for c in step.diff.changes if c.replace)
            head += f" [magenta]{escape(forced)} forces replacement[/]"
        lines.append(head)
        if step.action is Action.CREATE and step.desired:
            for key, value in step.desired.items():
                if value is not None:
                    lines.append(f"        {escape(key)}: {escape(show(value, 90))}")
        for change in step.diff.changes:
            lines.append(
                f"        {escape(change.path)}: {escape(show(change.before, 60))} → "
                f"{escape(show(change.after, 60))}"
            )
        lines += [f"        [cyan]note: {escape(note)}[/]" for note in step.notes]
        if step.blocked:
            lines.append(f"        [yellow]blocked: {escape(step.blocked)}[/]")
    counts = plan.counts()
    if plan.changes:
        lines.append(
            f"Plan: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['replace']} to replace, {counts['delete']} to delete, "
            f"{counts['no-op']} unchanged."
        )
    else:
        lines.append(f"No changes: {len(plan.steps)} resources match the spec.")
    return lines


def progress_line(step: Step, outcome: Outcome | None) -> str:
    symbol, colour = SYMBOL[step.action]
    if outcome is None:
        return f"[{colour}]{symbol:>3}[/] {escape(step.key)}: {step.action} …"
    if outcome.status is Status.FAILED:
        return f"[red]  ✗ {escape(step.key)}: {escape(outcome.error or '')}[/]"
    if outcome.status is Status.SKIPPED:
        why = outcome.error or "skipped (a dependency failed)"
        return f"[yellow]  ↷ {escape(step.key)}: {escape(why)}[/]"
    return f"[green]  ✓[/] {escape(step.key)}: {step.action} done ({outcome.seconds:.1f}s)"


def summary_table(report: Report, seconds: float, api_calls: int, writes: int) -> Table:
    table = Table(title=f"Summary ({seconds:.1f}s, {api_calls} API calls, {writes} writes)")
    for column in ("resource", "action", "result", "detail"):
        table.add_column(column)
    colours = {Status.DONE: "green", Status.FAILED: "red", Status.SKIPPED: "yellow"}
    for outcome in report.outcomes.values():
        if outcome.status is Status.UNCHANGED:
            continue
        colour = colours.get(outcome.status, "")
        table.add_row(
            escape(outcome.key),
            str(outcome.action),
            f"[{colour}]{outcome.status}[/]",
            escape(outcome.error or ""),
        )
    unchanged = len(report.by_status(Status.UNCHANGED))
    table.caption = (
        f"{len(report.by_status(Status.DONE))} done, {len(report.by_status(Status.FAILED))} "
        f"failed, {len(report.by_status(Status.SKIPPED))} skipped, {unchanged} unchanged"
    )
    return table


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """`rows` under `columns`."""
    made = Table(title=title)
    for column in columns:
        made.add_column(column)
    for row in rows:
        made.add_row(*row)
    return made


def alarm_table(alarms: list[dict[str, Any]]) -> Table:
    colours = {"OK": "green", "ALARM": "red", "INSUFFICIENT_DATA": "yellow"}
    rows = (
        (
            escape(alarm["name"]),
            f"[{colours.get(alarm['state'], 'dim')}]{alarm['state']}[/]",
            escape(str(alarm["updated"] or "")),
            escape(alarm["reason"] or ""),
        )
        for alarm in alarms
    )
    return table("Alarms", ("alarm", "state", "since", "reason"), rows)


def status_table(rows: list[dict[str, Any]]) -> Table:
    colours = {"in sync": "green", "missing": "yellow", "drifted": "red"}
    cells = (
        (
            escape(row["key"]),
            escape(row["name"]),
            f"[{colours.get(row['status'], '')}]{row['status']}[/]",
            escape(", ".join(row["drifted"])),
        )
        for row in rows
    )
    return table("Pipeline status", ("resource", "name", "status", "drifted properties"), cells)


def versions_table(rows: list[dict[str, Any]]) -> Table:
    cells = (
        (
            row["version"],
            "*" if row["active"] else "",
            ", ".join(row["variants"]),
            f"{row['weight']}%" if row["variants"] else "",
            row["registeredAt"] or "(declared, not uploaded)",
            ", ".join(f"{k}={v:g}" for k, v in (row["performanceBaseline"] or {}).items()),
        )
        for row in rows
    )
    columns = ("version", "active", "variant", "weight", "registered at", "baseline")
    return table("Model versions", columns, cells)


def history_table(events: list[dict[str, Any]]) -> Table:
    columns = ("when", "what", "from", "to", "who", "detail")
    return table("History", columns, ([str(e[k] or "") for k in columns] for e in events))
