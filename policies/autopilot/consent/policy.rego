# Consent and automated decisions (CPPA ADMT, GDPR Art. 22): opted-out people never
# get automated messages; a significant automated decision needs a pre-use notice
# on record (its human review is routed by the approval package) and is never taken
# about someone who opted out of automated decision-making.
package autopilot.consent

import rego.v1

deny contains {"code": "consent.opted_out", "msg": "the recipient opted out of automated messages"} if {
	input.action.recipient.opted_out == true
}

# CPPA ADMT opt-out (and GDPR Art. 21/22 objection): the person has asked that no automated
# system make significant decisions about them. A deny, not an approval: the approval
# package already sends every significant decision to a CSM, and approving the agent's
# proposal would still be a decision framed by the automated system (its price, its
# discount) - what the person opted out of. Their CSM decides by hand, outside the agent.
# Written so that a recipient without the flag is treated as opted out (fail closed).
deny contains {"code": "consent.admt_opted_out", "msg": msg} if {
	input.action.significant == true
	is_object(input.action.recipient)
	not input.action.recipient.admt_opted_out == false
	msg := "the recipient opted out of automated decision-making: a person must decide this by hand"
}

deny contains {"code": "consent.no_notice", "msg": msg} if {
	input.action.significant == true
	not input.action.recipient.notice_on_record == true
	msg := "no pre-use notice of automated decision-making is on record for the recipient"
}

obligations contains {"type": "admt_record", "reason": "significant automated decision: keep its logic and outcome accessible"} if {
	input.action.significant == true
}
