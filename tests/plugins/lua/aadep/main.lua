-- Registers on testc.event, a hook declared by the C plugin testc: plugins load after those
-- they require, whatever their names.
halle.hook("testc.event", function(value, req)
  value.trace[#value.trace + 1] = "aadep"
  return value
end)
