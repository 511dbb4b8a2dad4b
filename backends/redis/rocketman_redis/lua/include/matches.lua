-- matches(name, patterns): does the event name match one of the
-- space-separated patterns? '*' matches any characters; every other
-- character matches itself.
local compiled = {}
local function matches(name, patterns)
  for pattern in string.gmatch(patterns, '%S+') do
    if not string.find(pattern, '*', 1, true) then
      if pattern == name then return true end
    else
      local lua = compiled[pattern]
      if not lua then
        local escaped = string.gsub(pattern, '[%^%$%(%)%%%.%[%]%+%-%?]', '%%%0')
        lua = '^' .. string.gsub(escaped, '%*', '.*') .. '$'
        compiled[pattern] = lua
      end
      if string.find(name, lua) then return true end
    end
  end
  return false
end
