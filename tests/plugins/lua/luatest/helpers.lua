-- Loaded with require("helpers"): modules come from the plugin's own folder only.
local M = {}
function M.twice(s) return s .. s end
return M
