-- Test fixture for tests/interop_prosody.rs: static server-to-server routes for Prosody 0.12,
-- which only knows DNS. `test_s2s_routes = { ["kleiber.test"] = { "127.0.0.1", 5269 } }`
-- makes outgoing links to kleiber.test go to that address (STARTTLS) instead of SRV/A lookups.
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";

local routes = module:get_option("test_s2s_routes", {});
local original_new = service.new;

-- A resolver with no targets (no direct-TLS service for routed domains).
local none = setmetatable({}, { __index = { next = function (_, cb) cb(nil); end } });

service.new = function (hostname, srv, proto, extra)
	local route = routes[hostname];
	if route then
		if srv == "xmpps-server" then
			return none;
		end
		module:log("debug", "static route for %s", hostname);
		return basic.new(route[1], route[2], proto, extra);
	end
	return original_new(hostname, srv, proto, extra);
end

function module.unload()
	service.new = original_new;
end
