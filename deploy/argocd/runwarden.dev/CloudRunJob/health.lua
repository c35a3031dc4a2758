-- Argo CD health check for runwarden.dev/CloudRunJob (Lua 5.1, as gopher-lua runs it).
-- Healthy:     Ready=True, observed for the current metadata.generation.
-- Progressing: generation not yet observed, no Ready condition, Ready=Unknown, or Ready=False
--              with a transient reason.
--              A runToken's execution that is running (ExecutionRunning) is Progressing.
-- Degraded:    Ready=False with a reason that needs a spec change or a failure reason, such
--              as a runToken's execution that failed (ExecutionFailed), and any reason this
--              script does not know.
local hs = {}

-- Reasons under which runwarden is still working towards Ready (it retries by itself).
local progressing = {
  Reconciling = true,
  Creating = true,
  Deleting = true,
  ConnectorNotReady = true,
  ConnectorNotFound = true,
  QuotaExceeded = true,
  Unavailable = true,
  Conflict = true,
  ExecutionRunning = true,
}

local function describe(c, fallback)
  local reason = c.reason
  local message = c.message
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= nil and message ~= "" then
    return message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for runwarden to reconcile"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for runwarden to observe generation " .. tostring(generation)
  return hs
end

local ready = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for runwarden to observe generation " .. tostring(generation)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  local last = obj.status.latestExecution
  if last ~= nil and last.name ~= nil and last.state ~= nil then
    hs.message = hs.message .. " (last execution " .. last.name .. ": " .. last.state .. ")"
  end
  return hs
end

if ready.status == "False" and not progressing[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Reconciling")
return hs
