/** Entry point: the HTTP app and the Durable Object classes the runtime instantiates. */
import { app } from "./app";

export { CallbackClaims } from "./claims/object";
export { Conversation } from "./conversation/object";
export { ReplayJob } from "./ops/replay-job";

export default app satisfies ExportedHandler<Env>;
