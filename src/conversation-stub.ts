/** The one way to reach a conversation's object: by its conversation key. */
export function conversationStub(env: Pick<Env, "CONVERSATION">, conversation: string) {
  return env.CONVERSATION.get(env.CONVERSATION.idFromName(conversation));
}
