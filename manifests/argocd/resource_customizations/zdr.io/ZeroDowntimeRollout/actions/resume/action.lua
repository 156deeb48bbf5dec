-- Argo CD action "resume" for zdr.io/ZeroDowntimeRollout: `kubectl zdr resume`,
-- a rollout paused by command continues (spec.paused, the GitOps pause, stays in git).
-- Like the plugin, it writes a request into the zdr.io/command annotation and never touches spec;
-- the operator handles each request id once and records its answer in status.lastCommand.
-- The id needs no random source: the object's resourceVersion changes with every write, this
-- request's included, so no two requests share one. Argo CD's sandbox has os.date but no string
-- library and no JSON encoder: the request is written out by hand (its values are the verb, UTC
-- times and the resourceVersion, a decimal number, so nothing needs escaping).
local requestedAt = os.date("!%Y-%m-%dT%H:%M:%SZ")
local version = obj.metadata.resourceVersion or "0"
local id = "argocd-" .. os.date("!%Y%m%dT%H%M%SZ") .. "-" .. version
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["zdr.io/command"] = '{"full":false,"id":"' .. id ..
  '","requestedAt":"' .. requestedAt .. '","requestedBy":"argocd","verb":"resume"}'
return obj
