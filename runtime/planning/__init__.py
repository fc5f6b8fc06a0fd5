"""The LLM planner (issue #13, bring your own LLM): prompts with free text fenced as data,
tool calls over the agent's granted tools validated into ProposedActions, drafts checked
against the facts they must carry. The optimizer still chooses and the gate still decides."""
