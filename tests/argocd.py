"""Argo CD's resource-action contract, for zdr's Lua in
manifests/argocd/resource_customizations/zdr.io/ZeroDowntimeRollout.

What Argo CD does (util/lua/lua.go, server/application/application.go), and so what this does:

- a script runs in Lua 5.1 (Argo CD's gopher-lua is a Lua 5.1; lupa.lua51 here) with the live
  object as the global ``obj`` and, for a custom action, only the base and table libraries and an
  ``os`` table with ``time`` and ``date``: no string, math, io or debug library, and no string
  methods;
- ``health.lua`` returns ``{status = ..., message = ...}``;
- ``actions/discovery.lua`` returns ``{name = {disabled = bool}}``;
- ``actions/<name>/action.lua`` returns the changed object; Lua cannot tell an empty table from an
  empty list, so an empty table where the live object had a map becomes that map again; the JSON
  merge patch (RFC 7386) from the live object to the result is applied to the resource (a change
  under ``status`` would go to the status subresource: zdr's actions never make one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua

CUSTOMIZATION = (
    Path(__file__).resolve().parents[1]
    / "manifests/argocd/resource_customizations/zdr.io/ZeroDowntimeRollout"
)
ACTIONS = ("promote", "promote-full", "abort", "retry", "pause", "resume", "restart")

# Runs `script` with `obj` in an environment holding what Argo CD opens for a custom action.
_SANDBOX = """
local script, obj = ...
local env = {obj = obj, table = table, os = {time = os.time, date = os.date}}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
                       "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
                       "type", "unpack", "xpcall", "_VERSION"}) do
  env[name] = _G[name]
end
env._G = env
local chunk = assert(loadstring(script, "=script"))
setfenv(chunk, env)
debug.setmetatable("", nil)
return chunk()
"""


def run_lua(script: str, obj: dict[str, Any]) -> Any:
    """The script's return value (a Lua table) for the global ``obj``."""
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    sandbox = runtime.execute(f"return function(...) {_SANDBOX} end")
    return sandbox(script, runtime.table_from(obj, recursive=True))


def to_python(value: Any, like: Any = None) -> Any:
    """A Lua value as JSON-like Python; ``like`` is the live value at the same place (an empty table
    where it was a map is a map again, as Argo CD's cleanReturnedObj does)."""
    if lua.lua_type(value) != "table":
        return value
    keys = list(value.keys())
    if not keys:
        return {} if isinstance(like, dict) else []
    if all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        old = like if isinstance(like, list) else []
        return [to_python(value[i], old[i - 1] if i <= len(old) else None) for i in range(1, len(keys) + 1)]
    old_map = like if isinstance(like, dict) else {}
    return {str(k): to_python(v, old_map.get(str(k))) for k, v in value.items()}


def discover(obj: dict[str, Any]) -> dict[str, bool]:
    """Action name -> enabled, as the Argo CD UI offers them for ``obj``."""
    result = to_python(run_lua((CUSTOMIZATION / "actions/discovery.lua").read_text(), obj), {})
    return {name: not (spec or {}).get("disabled", False) for name, spec in result.items()}


def run_action(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object ``actions/<name>/action.lua`` returns for ``obj``."""
    script = (CUSTOMIZATION / "actions" / name / "action.lua").read_text()
    new: dict[str, Any] = to_python(run_lua(script, obj), obj)
    return new


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch


def action_patch(name: str, live: dict[str, Any]) -> dict[str, Any]:
    """The merge patch Argo CD applies when the action ``name`` runs on ``live``."""
    patch: dict[str, Any] = merge_patch(live, run_action(name, live))
    return patch


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of ``health.lua`` for ``obj``, as Argo CD shows the resource's health."""
    result = to_python(run_lua((CUSTOMIZATION / "health.lua").read_text(), obj), {})
    return result["status"], result.get("message") or ""
