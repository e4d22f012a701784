// The official JS SDK reads the local API's production history (GET /v1/convai/conversations
// and GET /v1/convai/conversations/{id}), validating every reply. Run by
// tests/test_conversation_history.py:  node conversations.mjs http://127.0.0.1:PORT
// Prints one JSON line of what it read; exits non-zero on any error.
import { ElevenLabsClient } from "@elevenlabs/elevenlabs-js";

const client = new ElevenLabsClient({ baseUrl: process.argv[2], apiKey: "local", maxRetries: 0 });
const conversations = client.conversationalAi.conversations;

const ids = [];
let cursor = undefined;
let pages = 0;
do {
  const page = await conversations.list({
    agentId: "agent_support",
    callSuccessful: "failure",
    pageSize: 7,
    cursor,
    evaluationCriteriaIds: ["order_verified"],
  });
  pages += 1;
  for (const c of page.conversations) ids.push(c.conversationId);
  cursor = page.hasMore ? page.nextCursor : undefined;
} while (cursor);
const detail = await conversations.get(ids[0]);
console.log(
  JSON.stringify({
    pages,
    ids,
    agentId: detail.agentId,
    transcriptTurns: detail.transcript.length,
    callSuccessful: detail.analysis.callSuccessful,
    dynamicVariables: Object.keys(detail.conversationInitiationClientData.dynamicVariables),
  }),
);
