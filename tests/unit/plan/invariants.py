"""The rollout invariants, written independently of the planner's own arithmetic.

``violations(spec, observed, plan)`` lists every way ``plan`` breaks them, given what was observed:

- floor: serving pods (available, ready endpoints of the MAIN Service, within spec.replicas)
  are never planned below ``replicas - maxUnavailable`` (Canary: ``replicas``) when they are at or
  above it now; a scale-down can take away at most the ready pods it removes (a ReplicaSet
  removes not-ready pods first);
- ceiling (RollingUpdate, Canary): a plan creates new pods only while the pods that exist (or
  are requested) plus the new ones stay within ``replicas + maxSurge``. Exempt, up to
  ``replicas`` pods each: the revision a revert moves traffic to (the stable one of an abort,
  the one an undo goes to, a re-applied template that was stable before) and a replaced stable
  revision kept warm out of traffic (MAIN selects another revision alone);
- Services: a Service is moved to a revision only if every pod of that revision serves (or
  the Service serves nothing now), and a revision a pinned Service selects keeps pods;
- abort and undo: the revision they leave is never scaled up and no Service is moved to it
  (except, while it is still the stable revision, MAIN narrowed to it from every pod of the
  rollout, so the target's pods come up out of traffic).
"""

from __future__ import annotations

import math
from typing import Any

from zdr.api import ServiceRole, parse_spec
from zdr.plan import Observed, Plan


def _resolve(value: int | str, total: int, up: bool) -> int:
    if isinstance(value, int):
        return value
    scaled = int(value.rstrip("%")) * total / 100
    return math.ceil(scaled) if up else math.floor(scaled)


def limits(spec: dict[str, Any]) -> tuple[int, int | None]:
    """(floor, ceiling) for a spec; ceiling None for BlueGreen."""
    parsed = parse_spec(spec)
    replicas = parsed.replicas
    kind = parsed.strategy.type
    if kind == "RollingUpdate":
        params = parsed.strategy.effective_rolling_update
        surge = _resolve(params.max_surge, replicas, True)
        unavailable = min(replicas, _resolve(params.max_unavailable, replicas, False))
        if surge == 0 and unavailable == 0:
            surge = 1
        return replicas - unavailable, replicas + surge
    if kind == "Canary":
        surge = _resolve(parsed.strategy.effective_canary.max_surge, replicas, True)
        return replicas, replicas + max(surge, 1 if replicas else 0)
    return replicas, None


def serving_now(observed: Observed) -> int:
    return sum(
        max(0, min(r.available_replicas, r.endpoints(ServiceRole.MAIN), r.spec_replicas))
        for r in observed.revisions.values()
    )


def serving_after(observed: Observed, plan: Plan) -> int:
    """Lowest number of serving pods once the plan's scale-downs took effect."""
    total = 0
    for name, rev in observed.revisions.items():
        now = max(0, min(rev.available_replicas, rev.endpoints(ServiceRole.MAIN), rev.spec_replicas))
        desired = plan.replicas.get(name, rev.spec_replicas)
        removed = max(0, rev.spec_replicas - desired)
        unready = rev.spec_replicas - max(0, min(rev.ready_replicas, rev.spec_replicas))
        total += max(0, now - max(0, removed - unready))
    return total


def _evidence(observed: Observed, name: str) -> int:
    rev = observed.revisions[name]
    ready = max(0, min(rev.available_replicas, rev.spec_replicas))
    roles = [
        role
        for role, svc in observed.services.items()
        if svc.target is not None and (svc.target.revision is None or svc.target.revision == name)
    ]
    if not roles:
        return ready
    return min(ready, max(rev.endpoints(role) for role in roles))


def violations(spec: dict[str, Any], observed: Observed, plan: Plan) -> list[str]:
    found: list[str] = []
    parsed = parse_spec(spec)
    floor, ceiling = limits(spec)
    if parsed.strategy.type != "BlueGreen":
        before = serving_now(observed)
        after = serving_after(observed, plan)
        if before >= floor and after < floor:
            found.append(f"floor: serving {before} -> at least {after}, below {floor}")
    else:
        main = observed.target(ServiceRole.MAIN)
        if main is not None and main.revision in observed.revisions:
            rev = observed.revisions[main.revision]
            desired = plan.replicas.get(main.revision, rev.spec_replicas)
            if desired < min(rev.spec_replicas, parsed.replicas):
                found.append(f"active revision {main.revision} scaled down to {desired} while selected")
    exempt = _exempt(observed, plan)
    if ceiling is not None:
        before = 0
        created = 0
        for name in set(observed.revisions) | set(plan.replicas):
            rev = observed.revisions.get(name)
            pods = max(rev.spec_replicas, rev.replicas) if rev else 0
            wanted = plan.replicas.get(name, pods)
            if name in exempt:
                if wanted > max(pods, parsed.replicas):
                    found.append(f"ceiling: {name} (reverted to or kept warm) planned at {wanted} pods")
                continue
            before += pods
            created += max(0, wanted - pods)
        if created and before + created > ceiling:
            found.append(f"ceiling: {created} new pods on top of {before}, above {ceiling}")
    left = _left(plan)
    if left is not None:
        rev = observed.revisions.get(left)
        now = rev.spec_replicas if rev else 0
        if plan.replicas.get(left, now) > now:
            found.append(f"revision {left} scaled up although the rollout left it")
        for role, target in plan.services.items():
            narrowing = plan.status.stable_revision == left  # it serves until the target takes over
            if target.revision == left and observed.target(role) != target and not narrowing:
                found.append(f"{role.value} Service moved to {left}, which the rollout left")
    for role, target in plan.services.items():
        current = observed.target(role)
        if target == current or target.revision is None:
            continue
        idle = (
            role not in observed.services or sum(r.endpoints(role) for r in observed.revisions.values()) == 0
        )
        if idle:
            continue
        name = target.revision
        if name not in observed.revisions:
            found.append(f"{role.value} Service moved to unknown revision {name}")
            continue
        need = max(1, observed.revisions[name].spec_replicas)
        if _evidence(observed, name) < need:
            found.append(
                f"{role.value} Service moved to {name} with {_evidence(observed, name)}/{need} serving"
            )
    final = {role: svc.target for role, svc in observed.services.items() if role not in plan.delete_services}
    final.update(plan.services)
    pinned = {t.revision for t in final.values() if t is not None and t.revision}
    for name in pinned:
        rev = observed.revisions.get(name)
        scaled_to_zero = (
            rev is not None and rev.spec_replicas > 0 and plan.replicas.get(name, rev.spec_replicas) == 0
        )
        if scaled_to_zero and parsed.replicas > 0:
            found.append(f"revision {name} scaled to 0 while a Service selects it")
        if name in plan.delete:
            found.append(f"revision {name} deleted while a Service selects it")
    return found


def _left(plan: Plan) -> str | None:
    """The template's revision while an abort or an undo keeps traffic away from it."""
    status = plan.status
    if status.abort is not None and status.abort.revision == status.update_revision:
        return status.update_revision
    if status.rollback is not None and status.rollback.revision != status.update_revision:
        return status.update_revision
    return None


def _exempt(observed: Observed, plan: Plan) -> set[str]:
    """Revisions allowed above the surge ceiling (see the module docstring)."""
    status = plan.status
    exempt: set[str] = set()
    if status.abort is not None and status.stable_revision is not None:
        exempt.add(status.stable_revision)
    if status.rollback is not None:
        exempt.add(status.rollback.revision)
    update = status.revision_record(status.update_revision)
    if update is not None and update.retired_at is not None and status.stable_revision != update.name:
        exempt.add(update.name)
    main = plan.services.get(ServiceRole.MAIN, observed.target(ServiceRole.MAIN))
    if main is not None and main.revision is not None:
        for record in status.revisions:
            if record.retired_at is not None and record.name != main.revision:
                exempt.add(record.name)
    return exempt
