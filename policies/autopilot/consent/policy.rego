# Consent and automated decisions (CPPA ADMT, GDPR Art. 22): opted-out people never
# get automated messages; a significant automated decision needs a pre-use notice
# on record (its human review is routed by the approval package).
package autopilot.consent

import rego.v1

deny contains {"code": "consent.opted_out", "msg": "the recipient opted out of automated messages"} if {
	input.action.recipient.opted_out == true
}

deny contains {"code": "consent.no_notice", "msg": msg} if {
	input.action.significant == true
	not input.action.recipient.notice_on_record == true
	msg := "no pre-use notice of automated decision-making is on record for the recipient"
}

obligations contains {"type": "admt_record", "reason": "significant automated decision: keep its logic and outcome accessible"} if {
	input.action.significant == true
}
