-- Argo CD health check of ecs.reinstall.dev/EcsReinstallSet (resource.customizations.health.ecs.reinstall.dev_EcsReinstallSet).
-- Lua 5.1 as run by gopher-lua: no goto, no integer division, no string.format("%q").
-- Reads status.phase, the kstatus conditions the operator writes (Ready, Reconciling, Stalled), status.inFlight and
-- status.observedGeneration:
--   Healthy      phase Completed and Ready=True (every selected server done at the revision, none failed)
--   Degraded     Stalled=True: FailureBudgetExceeded (paused by spec.strategy.maxFailures), CompletedWithFailures,
--                InvalidSpec, Forbidden (a tenancy rule refused it); with the operator's message
--   Suspended    phase Paused (spec.paused), Aborted with nothing in flight (spec.abort), Planned (spec.dryRun: a
--                plan in status.plan, nothing is rolled out): nothing happens until someone changes the spec
--   Progressing  everything else: no status yet, a stale observedGeneration, Resolving, Progressing, Aborted while
--                reinstalls in flight finish; with status.message
local hs = {}

local function findCondition(conditions, conditionType)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == conditionType then
      return condition
    end
  end
  return nil
end

-- The first non-empty string of the arguments, else the last argument.
local function firstMessage(...)
  local count = select("#", ...)
  for i = 1, count do
    local value = select(i, ...)
    if type(value) == "string" and value ~= "" then
      return value
    end
  end
  return select(count, ...)
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the set"
  return hs
end

local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (observed " .. tostring(observed) .. ")"
  end
  return hs
end

local conditions = status.conditions
local phase = firstMessage(status.phase, "Resolving")

local stalled = findCondition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = firstMessage(stalled.message, status.message, stalled.reason, "The rollout is stalled")
  return hs
end

local ready = findCondition(conditions, "Ready")
if phase == "Completed" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = firstMessage(ready.message, status.message, "Every server is done at the revision")
  return hs
end

local inFlight = tonumber(status.inFlight) or 0
if phase == "Paused" or phase == "Planned" or (phase == "Aborted" and inFlight == 0) then
  hs.status = "Suspended"
  hs.message = firstMessage(status.message, "Phase " .. phase)
  return hs
end

local reconciling = findCondition(conditions, "Reconciling")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = firstMessage(status.message, reconciling.message, "Phase " .. phase)
else
  hs.message = firstMessage(status.message, "Phase " .. phase)
end
return hs
