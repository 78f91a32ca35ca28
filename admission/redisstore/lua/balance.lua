-- Balance: a budget's spent and held in one period.
--
-- KEYS[1]  the budget's hash
-- KEYS[2]  its holds
-- returns  {spent, held}

local s, h = readBudget(KEYS[1], KEYS[2])
return {s, h}
