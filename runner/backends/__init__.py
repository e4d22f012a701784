"""Backends: one job, one attempt, against one of the vendor's APIs.

``base`` (the interface the engine sees and the result types), ``simulate`` (the two
simulate-conversation endpoints) and ``agent_testing`` (server-side simulation tests). The
package imports nothing itself, so the engine depends on ``base`` alone, never on HTTP.
"""
