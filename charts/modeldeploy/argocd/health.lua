-- Argo CD health check for modeldeploy.io/ModelDeployment (Lua 5.1, as Argo CD's gopher-lua runs it).
-- Install: docs/gitops-argocd.md. Tests: tests/test_argocd_health.py with tests/fixtures/argocd/.
-- The first matching rule wins:
--   no status at all                          -> Missing     (the operator has not seen the object yet)
--   status.observedGeneration < generation    -> Progressing (the operator has not seen the latest spec)
--   phase Failed | RolledBack | Blocked       -> Degraded
--   phase Paused                              -> Suspended   (annotation modeldeploy.io/paused: "true")
--   condition Degraded = True                 -> Degraded
--   phase Progressing | Promoting             -> Progressing
--   phase Stable and condition Ready = True   -> Healthy
--   phase Stable or none, Ready not True      -> Progressing
--   any other phase                           -> Unknown     (an operator newer than this check)
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or next(status) == nil then
  hs.status = "Missing"
  hs.message = "Waiting for the modeldeploy operator to observe this ModelDeployment"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local progressing = condition(status, "Progressing")

if phase == "Failed" or phase == "RolledBack" or phase == "Blocked" then
  hs.status = "Degraded"
  hs.message = message_of(degraded, message_of(ready, "Rollout " .. phase))
  return hs
end

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message_of(progressing, "Rollout paused")
  return hs
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(degraded, "Degraded")
  return hs
end

if phase == "Progressing" or phase == "Promoting" then
  hs.status = "Progressing"
  local fallback = "Rollout " .. phase
  if status.canaryWeight ~= nil then
    fallback = fallback .. ": canary at " .. tostring(status.canaryWeight) .. "% of traffic"
  end
  hs.message = message_of(progressing, fallback)
  return hs
end

if phase == "Stable" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Serving")
  return hs
end

if phase == "Stable" or phase == nil then
  hs.status = "Progressing"
  hs.message = message_of(ready, "Waiting for the model to become ready")
  return hs
end

hs.status = "Unknown"
hs.message = "Unrecognised phase: " .. tostring(phase)
return hs
