-- Argo CD action discovery for zdr.io/ZeroDowntimeRollout.
-- Every action sends one `kubectl zdr` command; an action is enabled when the operator would
-- accept that command in the state the rollout's status shows (the rules of
-- operator/zdr/plan/__init__.py), so the Argo CD UI offers only what takes effect.
-- Argo CD runs this without the string and math libraries: plain comparisons only.
local actions = {}
local names = {"promote", "promote-full", "abort", "retry", "pause", "resume", "restart"}
for _, name in ipairs(names) do
  actions[name] = {["disabled"] = true}
end
local function enable(name, on)
  if on then
    actions[name]["disabled"] = false
  end
end

local status = obj.status or {}
local strategy = "RollingUpdate"
if obj.spec ~= nil and obj.spec.strategy ~= nil and obj.spec.strategy.type ~= nil then
  strategy = obj.spec.strategy.type
end
local update = status.updateRevision
local stable = status.stableRevision

-- A rollout runs while the template's revision is not the stable one.
local inRollout = stable ~= nil and update ~= nil and stable ~= update
-- An abort or an undo holds while the template still asks for the revision it left.
local aborted = inRollout and status.abort ~= nil and status.abort.revision == update
local rolledBack = status.rollback ~= nil and status.rollback.fromRevision == update
-- A template that was stable before comes back as a fast rollback, not as a rollout.
local reapplied = false
if inRollout and status.revisions ~= nil then
  for _, record in ipairs(status.revisions) do
    if record.name == update and record.retiredAt ~= nil then
      reapplied = true
    end
  end
end
local forward = inRollout and not aborted and not rolledBack and not reapplied

-- Nothing moves toward a revision: no rollout, or an abort or undo that has completed.
local settled = not inRollout
if aborted then
  settled = status.abort.completedAt ~= nil
elseif rolledBack then
  settled = status.rollback.completedAt ~= nil
end
local serving = stable
if rolledBack then
  serving = status.rollback.revision
end
local pausedByCommand = status.pausedByCommand == true

enable("promote", forward and strategy ~= "RollingUpdate")
enable("promote-full", forward and strategy ~= "RollingUpdate")
enable("abort", forward)
enable("retry", aborted or rolledBack)
enable("pause", not pausedByCommand)
enable("resume", pausedByCommand)
enable("restart", serving ~= nil and settled)
return actions
