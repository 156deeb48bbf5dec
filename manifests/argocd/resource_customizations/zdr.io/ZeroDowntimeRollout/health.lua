-- Argo CD health check for zdr.io/ZeroDowntimeRollout.
-- The resource follows kstatus (observedGeneration, Ready/Reconciling/Stalled conditions);
-- this script maps its phase onto Argo CD's health states.
local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.metadata.generation == nil or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the rollout spec to be observed"
  return hs
end
local phase = obj.status.phase
local message = obj.status.message or ""
if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  -- A paused rollout waits for `kubectl zdr promote` or `resume`: Argo CD's Suspended.
  hs.status = "Suspended"
elseif phase == "Degraded" or phase == "Aborted" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
