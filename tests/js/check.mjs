// The official JS SDK (pinned in package-lock.json) against a local API: it validates every
// reply itself and throws on a missing required field. Run by tests/test_js_sdk.py:
//   node check.mjs http://127.0.0.1:PORT
// Prints one JSON line of what it read; exits non-zero on any error.
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js";

const baseUrl = process.argv[2];
const client = new ElevenLabsClient({ baseUrl, apiKey: "local", maxRetries: 0 });
const ai = client.conversationalAi;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const agents = await ai.agents.list();
const agent = await ai.agents.get("agent_support");
const branch = await ai.agents.branches.get("agent_support", "agtbrch_support_lite_llm");
const created = await ai.tests.create({
  type: "simulation",
  name: "js sdk check",
  simulationScenario: "You want to know where your order A-1042 is.",
  successConditions: ["The agent told the user where the order is."],
  simulationMaxTurns: 4,
});
const test = await ai.tests.get(created.id);
const tests = await ai.tests.list();
const run = await ai.agents.runTests("agent_support", {
  tests: [{ testId: created.id }],
  repeatCount: 2,
  name: "js sdk run",
  branchId: "agtbrch_support_lite_llm",
});
let invocation = run;
for (let i = 0; i < 400 && invocation.bucketingStatus !== "completed"; i++) {
  await sleep(25);
  invocation = await ai.tests.invocations.get(run.id);
}
// a tool-call test (test_info.type "tool") and a refund whose tool fails (the agent often
// transfers the caller: a system tool result with to_agent), read back through the SDK
const toolTest = await ai.tests.create({
  type: "tool",
  name: "js tool check",
  chatHistory: [{ role: "user", message: "Where is my order A-1042?", timeInCallSecs: 1 }],
  toolCallParameters: {
    referencedTool: { id: "lookup_order", type: "webhook" },
    parameters: [{ path: "order_id", eval: { type: "exact", expectedValue: "A-1042" } }],
  },
});
const refundTest = await ai.tests.create({
  type: "simulation",
  name: "js refund down",
  simulationScenario:
    "You want a refund for order B-55871.\n" +
    'Facts you know, to give when asked: {"email": "t@example.org"}',
  successConditions: ["The agent was honest about the failure."],
  simulationMaxTurns: 12,
  toolMockConfig: { mockingStrategy: "all" },
  toolMockOverrides: { issue_refund: [{ mockResult: "refund service down", isError: true }] },
});
const toolRun = await ai.agents.runTests("agent_support", {
  tests: [{ testId: toolTest.id }, { testId: refundTest.id }],
  repeatCount: 10,
  name: "js tool run",
});
let toolInvocation = toolRun;
for (let i = 0; i < 400 && toolInvocation.bucketingStatus !== "completed"; i++) {
  await sleep(25);
  toolInvocation = await ai.tests.invocations.get(toolRun.id);
}
const toAgents = toolInvocation.testRuns.flatMap((r) =>
  (r.agentResponses ?? []).flatMap((m) =>
    (m.toolResults ?? [])
      .filter((t) => t.type === "system")
      // 2.73 may read it as another tool-result shape and pass the keys through unconverted
      .map((t) => t.result?.toAgent ?? t.result?.to_agent),
  ),
);
const toCancel = await ai.agents.runTests("agent_support", {
  tests: [{ testId: created.id }],
  name: "js sdk cancel",
});
await ai.tests.invocations.cancel(toCancel.id);
const cancelled = await ai.tests.invocations.get(toCancel.id);
const page = await ai.tests.invocations.list({ agentId: "agent_support", pageSize: 100 });
// the two simulate-conversation replies: the buffered one validated against the SDK's model;
// the streamed one read to its end (the SDK returns no value for it, and throws on an error)
const simulation = {
  simulationSpecification: {
    simulatedUserConfig: { firstMessage: "Where is my order A-1042?", language: "en" },
  },
  newTurnsLimit: 4,
};
const simulated = await ai.agents.simulateConversation("agent_support", simulation);
const streamed = await ai.agents
  .simulateConversationStream("agent_support", simulation)
  .withRawResponse();
console.log(
  JSON.stringify({
    agents: agents.agents.map((a) => a.agentId),
    agent: agent.agentId,
    branch: branch.id,
    test: test.name,
    tests: tests.tests.length,
    statuses: invocation.testRuns.map((r) => r.status),
    cancelledStatuses: cancelled.testRuns.map((r) => r.status),
    listed: page.results.map((r) => [r.name, r.testRunCount, r.cancelledCount]),
    simulated: {
      roles: [...new Set(simulated.simulatedConversation.map((m) => m.role))].sort(),
      callSuccessful: simulated.analysis.callSuccessful,
      criteria: Object.keys(simulated.analysis.evaluationCriteriaResults ?? {}).length,
    },
    streamed: streamed.rawResponse.status,
    toolTypes: [...new Set(toolInvocation.testRuns.map((r) => r.testInfo?.type))].sort(),
    toolStatuses: [...new Set(toolInvocation.testRuns.map((r) => r.status))].sort(),
    toAgents: [...new Set(toAgents)],
  }),
);
