# An agent may call only the tools its spec grants.
package autopilot.scope

import rego.v1

deny contains {"code": "tool.not_granted", "msg": msg} if {
	is_string(input.action.tool)
	is_array(input.agent.tools)
	not input.action.tool in input.agent.tools
	msg := sprintf("agent '%s' is not granted tool '%s'", [input.agent.name, input.action.tool])
}
