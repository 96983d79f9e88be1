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

-- The non-empty message of a condition or of the status, or nil. Callers chain these with `or`.
local function message_of(c)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return nil
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
-- The operator's one-line summary of the object, when it wrote one.
local summary = message_of(status)
local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local progressing = condition(status, "Progressing")

if phase == "Failed" or phase == "RolledBack" or phase == "Blocked" then
  hs.status = "Degraded"
  hs.message = message_of(degraded) or summary or message_of(ready) or ("Rollout " .. phase)
  return hs
end

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message_of(progressing) or summary or "Rollout paused"
  return hs
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(degraded) or summary or "Degraded"
  return hs
end

if phase == "Progressing" or phase == "Promoting" then
  hs.status = "Progressing"
  local fallback = "Rollout " .. phase
  if status.canaryWeight ~= nil then
    fallback = fallback .. ": canary at " .. tostring(status.canaryWeight) .. "% of traffic"
  end
  hs.message = message_of(progressing) or summary or fallback
  return hs
end

if phase == "Stable" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready) or summary or "Serving"
  return hs
end

if phase == "Stable" or phase == nil then
  hs.status = "Progressing"
  hs.message = message_of(ready) or summary or "Waiting for the model to become ready"
  return hs
end

hs.status = "Unknown"
hs.message = "Unrecognised phase: " .. tostring(phase)
return hs
