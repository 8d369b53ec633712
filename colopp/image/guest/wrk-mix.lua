-- wrk script for the colopp guest's kvd: a mix of GET and PUT on a small key set.
--   wrk -t2 -c8 -d15s -s wrk-mix.lua http://GUEST/
-- Each thread first PUTs every key once (so GETs never miss), then sends GETs
-- with PUTs mixed in.  Environment: KVD_KEYS (distinct keys, default 64),
-- KVD_PUT_RATIO (default 0.2), KVD_VALUE_SIZE (bytes, default 128).
local keys = tonumber(os.getenv("KVD_KEYS") or "64")
local put_ratio = tonumber(os.getenv("KVD_PUT_RATIO") or "0.2")
local value = string.rep("v", tonumber(os.getenv("KVD_VALUE_SIZE") or "128"))
local headers = { ["Content-Type"] = "application/octet-stream" }
local thread_count = 0
local sent = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_count)
end

function init(args)
   -- reproducible per thread: the same run sends the same request sequence
   math.randomseed(thread_id or 1)
end

function request()
   sent = sent + 1
   if sent <= keys then
      return wrk.format("PUT", "/kv/k" .. tostring(sent - 1), headers, value)
   end
   local path = "/kv/k" .. tostring(math.random(0, keys - 1))
   if math.random() < put_ratio then
      return wrk.format("PUT", path, headers, value)
   end
   return wrk.format("GET", path)
end
