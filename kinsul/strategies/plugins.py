"""Entry-point registries that cannot be hijacked: a name registered by two packages (a plugin against a
built-in, or two plugins) is refused in one line naming both, and each stays reachable by its qualified name
``<package>:<name>`` (``strategy.name=kinsul:naive``, ``strategy.name=my-plugin:naive``)."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points


class PluginConflictError(ValueError):
    pass


def package(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else ep.value.split(":")[0].split(".")[0]


def registry(group: str) -> tuple[dict[str, EntryPoint], dict[str, list[EntryPoint]]]:
    """(name -> entry point, name -> the entry points that claim it when several do). Qualified names
    ``package:name`` are always in the first; a shared plain name only in the second."""
    claims: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        same = claims.setdefault(ep.name, [])
        if all(
            (e.value, package(e)) != (ep.value, package(ep)) for e in same
        ):  # one package seen twice: once
            same.append(ep)
    out: dict[str, EntryPoint] = {}
    conflicts: dict[str, list[EntryPoint]] = {}
    for name, eps in claims.items():
        if len(eps) == 1:
            out[name] = eps[0]
        else:
            conflicts[name] = eps
        for ep in eps:
            out[f"{package(ep)}:{name}"] = ep
    return out, conflicts


def lookup(group: str, kind: str, key: str, name: str) -> EntryPoint | None:
    """The entry point ``name`` (plain or qualified), None if unknown; a shared plain name raises."""
    eps, conflicts = registry(group)
    if name in conflicts:
        claims = ", ".join(f"'{package(e)}' ({e.value})" for e in conflicts[name])
        pick = " or ".join(f"{key}={package(e)}:{name}" for e in conflicts[name])
        raise PluginConflictError(f"{kind} '{name}' is registered by more than one package: {claims}; kinsul "
                                  f"will not pick one silently: name it as {pick}, or uninstall one")  # fmt: skip
    return eps.get(name)


def plain_names(group: str) -> dict[str, EntryPoint]:
    """Unambiguous plain names only: what a list of known names shows."""
    eps, _ = registry(group)
    return {n: ep for n, ep in eps.items() if ":" not in n}
