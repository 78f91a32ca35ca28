-- Balance: a budget's spent and held in one period.
--
-- KEYS[2]  the budget
-- returns  {spent, held}

local s, h = read(KEYS[2])
return {s, h}
