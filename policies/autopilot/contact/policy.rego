# Contact caps: high-touch contacts per account per quarter and their length, a
# cool-down between automated messages to one person, quiet hours in the contact's
# time zone, and no marketing-style contact while a P1 ticket is open.
package autopilot.contact

import rego.v1

cfg := data.autopilot.contact.limits

messaging_kinds := {"email", "offer", "in_app", "meeting"}

deny contains {"code": "contact.high_touch_cap", "msg": msg} if {
	input.action.high_touch == true
	input.ledger.high_touch_contacts_quarter >= cfg.high_touch_per_quarter
	msg := sprintf("already %v high-touch contacts this quarter (cap %v)",
		[input.ledger.high_touch_contacts_quarter, cfg.high_touch_per_quarter])
}

deny contains {"code": "contact.too_long", "msg": msg} if {
	input.action.high_touch == true
	input.action.hours > cfg.high_touch_max_hours
	msg := sprintf("a high-touch contact of %v h is above the %v h limit", [input.action.hours, cfg.high_touch_max_hours])
}

deny contains {"code": "contact.recipient_missing", "msg": "a message needs a recipient"} if {
	input.action.kind in messaging_kinds
	not is_object(input.action.recipient)
}

deny contains {"code": "contact.cooldown", "msg": msg} if {
	input.action.kind in messaging_kinds
	since := input.action.recipient.hours_since_last_contact
	is_number(since)
	since < cfg.cooldown_hours
	msg := sprintf("the recipient was contacted %v h ago (cool-down %v h)", [since, cfg.cooldown_hours])
}

deny contains {"code": "contact.quiet_hours", "msg": msg} if {
	input.action.kind in messaging_kinds
	hour := input.action.recipient.local_hour
	quiet(hour)
	msg := sprintf("it is %v h in the recipient's time zone (quiet %v h to %v h)",
		[hour, cfg.quiet_start_hour, cfg.quiet_end_hour])
}

deny contains {"code": "input.invalid", "msg": "action.recipient.local_hour must be a number"} if {
	input.action.kind in messaging_kinds
	is_object(input.action.recipient)
	not is_number(input.action.recipient.local_hour)
}

quiet(hour) if hour >= cfg.quiet_start_hour

quiet(hour) if hour < cfg.quiet_end_hour

deny contains {"code": "contact.p1_open", "msg": msg} if {
	input.action.category in {"marketing", "commercial"}
	input.account.p1_open > 0
	msg := sprintf("no %s contact while %v P1 ticket(s) are open", [input.action.category, input.account.p1_open])
}
