-- A syntax error on line 3, to check the refusal message.
local x = 1
local y = = 2
