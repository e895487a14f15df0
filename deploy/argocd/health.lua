-- Argo CD health check of ecs.reinstall.dev/EcsReinstall (resource.customizations.health.ecs.reinstall.dev_EcsReinstall).
-- Lua 5.1 as run by gopher-lua: no goto, no integer division, no string.format("%q").
-- Reads the kstatus conditions the operator writes (Ready, Reconciling, Stalled) and status.observedGeneration:
--   Healthy      Ready=True and the operator has observed the current generation (the reinstall succeeded)
--   Degraded     Stalled=True (invalid spec, cloud job failed, timeout) or phase Failed
--   Progressing  everything else: no status yet, a stale observedGeneration, Pending/Submitting/Reinstalling
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
  hs.message = "Waiting for the operator to pick up the resource"
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
local stalled = findCondition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = firstMessage(stalled.message, status.message, stalled.reason, "The reinstall failed")
  return hs
end

if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = firstMessage(status.message, "The reinstall failed")
  return hs
end

local ready = findCondition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = firstMessage(ready.message, status.message, "The reinstall succeeded")
  return hs
end

local reconciling = findCondition(conditions, "Reconciling")
local phase = firstMessage(status.phase, "Pending")
hs.status = "Progressing"
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = firstMessage(reconciling.message, status.message, "Phase " .. phase)
else
  hs.message = firstMessage(status.message, "Phase " .. phase)
end
return hs
