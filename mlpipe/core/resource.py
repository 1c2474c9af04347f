"""The resource interface: one mechanism, many small resource kinds.

A resource reads its live state into the same shape as its desired state, and the generic
differ compares the two. The planner alone decides what to do; a resource only knows how to
read, create, update and delete itself. Contract: if `create` fails, nothing is left behind
that `read` would not find again (tags go on at create time wherever the API allows it).

A create AWS does not make idempotent (no unique name, no client token) goes through
`Context.create_once`; the resource declares how to find what it made by its tags, and `read`
reports the instances tagged with its key beyond the one it keeps as `extras` (left by a crash
or a race): the plan deletes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mlpipe.core.diff import Diff, Unknown, diff
from mlpipe.core.find import find
from mlpipe.core.tagging import read_tags, sync_tags

if TYPE_CHECKING:
    from mlpipe.core.context import Context

Outputs = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Observed:
    """Live state in desired's shape, the outputs dependents need, and ownership."""

    state: dict[str, Any]
    outputs: Outputs = field(default_factory=dict)
    owned: bool = True
    # Other live instances tagged with the same resource key: planned as deletes.
    extras: tuple[Observed, ...] = ()


class Refs:
    """Outputs of dependencies; a value not known yet (dependency not created) is Unknown."""

    def __init__(self, outputs: Mapping[str, Mapping[str, Any] | None]) -> None:
        self._outputs = outputs

    def __call__(self, key: str, name: str) -> Any:
        values = self._outputs.get(key)
        if values is None or name not in values:
            return Unknown(f"{key}.{name}")
        return values[name]


class Resource:
    kind: ClassVar[str]
    replace_on: ClassVar[tuple[str, ...]] = ()
    ignore: ClassVar[tuple[str, ...]] = ()
    # Mappings compared whole, so a key only on the live side is a change (extra tags, policies).
    exact: ClassVar[tuple[str, ...]] = ("Tags",)
    # The service whose tagging API keeps `Tags` in sync (`mlpipe.core.tagging`), and the
    # output that names the resource to it; None: the resource has no tags of its own.
    tagging: ClassVar[str | None] = None
    tag_id: ClassVar[str] = "arn"

    def __init__(
        self, ctx: Context[Any, Any], name: str, physical: str, depends_on: tuple[str, ...] = ()
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.physical = physical
        self.depends_on = depends_on
        self.retain = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def tags(self) -> dict[str, str]:
        return self.ctx.tags_for(self.key)

    def client(self, service: str) -> Any:
        return self.ctx.aws.client(service)

    def __repr__(self) -> str:
        return f"<{self.key} {self.physical}>"

    def find(self, service: str, operation: str, /, **params: Any) -> dict[str, Any] | None:
        """An AWS read; None when what it names does not exist (`mlpipe.core.find`)."""
        return find(self.client(service), operation, **params)

    def live_tags(self, resource: str) -> dict[str, str]:
        """The tags of `resource` (as `tag_id` names it), read through `tagging`'s service."""
        assert self.tagging is not None
        return read_tags(self.client(self.tagging), resource)

    def apply_changes(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        """An update as the executor runs it: the resource's own `update` for what changed
        besides its tags, then the tags, kept in sync here for every resource kind."""
        own = changes.without("Tags") if self.tagging else changes
        outputs = self.update(observed, desired, own) if own else {}
        if self.tagging and changes.touches("Tags"):
            ident = {**observed.outputs, **outputs}[self.tag_id]
            live = observed.state.get("Tags") or {}
            sync_tags(self.client(self.tagging), ident, live, desired["Tags"])
        return outputs

    def create_once(
        self, service: str, create: Callable[[Any], T], find: Callable[[], T | None]
    ) -> T:
        """`create(client)` with a client that never retries, and `find` to adopt what a
        failed attempt made (see `Context.create_once`)."""
        client = self.ctx.aws.client(service, once=True)
        return self.ctx.create_once(self.key, lambda: create(client), find)

    # The interface -----------------------------------------------------------------------
    def read(self) -> Observed | None:
        raise NotImplementedError

    def desired(self, refs: Refs) -> dict[str, Any]:
        raise NotImplementedError

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        return diff(
            current, desired, ignore=self.ignore, replace_on=self.replace_on, exact=self.exact
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        raise NotImplementedError

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        raise NotImplementedError

    def delete(self, observed: Observed) -> None:
        raise NotImplementedError

    def remnants(self) -> Observed | None:
        """For destroy, when `read` finds nothing: what a run killed half-way left of this
        resource, found by its tags rather than through the resource (None: nothing)."""
        return None

    def warnings(self) -> list[str]:
        """Security defaults the spec weakens for this resource, said at plan time."""
        return []

    def blocked(self, observed: Observed | None) -> str | None:
        """Why this resource cannot be applied yet, given what `read` found; None when it can.

        A blocked resource and its dependents are skipped; the rest of the plan applies."""
        return None


class Extra(Resource):
    """A live instance tagged with `resource`'s key beyond the one it keeps: deleted by the
    resource's own delete, after everything that depends on the resource was updated."""

    def __init__(self, resource: Resource, index: int, after: tuple[str, ...]) -> None:
        super().__init__(resource.ctx, f"{resource.name}#extra-{index}", resource.physical, after)
        self.resource = resource

    @property
    def key(self) -> str:
        return f"{self.resource.kind}:{self.name}"

    def read(self) -> Observed | None:
        return None

    def delete(self, observed: Observed) -> None:
        self.resource.delete(observed)


class AspectResource(Resource):
    """A resource whose update is one setter per changed top-level property (an "aspect").

    Subclasses map each aspect of their desired state to a setter; the update calls only the
    setters whose aspect changed, in the order of `aspects`.
    """

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        raise NotImplementedError

    def apply_aspects(self, desired: Mapping[str, Any], changes: Diff | None) -> None:
        for aspect, setter in self.aspects().items():
            managed = aspect in desired and desired[aspect] is not None
            if managed and (changes is None or changes.touches(aspect)):
                setter(desired[aspect])

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self.apply_aspects(desired, changes)
        return observed.outputs
