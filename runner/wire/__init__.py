"""The vendor's wire shapes, shared by the runner and the bundled local API.

``simulate``: the simulate-conversation endpoints (request, stream frames, reply, errors).
``agent_testing``: the agent-testing API (tests, run-tests, invocations) and the labels of
our scenario text. Nothing here does I/O; ``runner.localapi`` may import only this package.
"""
