/** Entry point: the HTTP app and the Durable Object class the runtime instantiates. */
import { app } from "./app";

export { Conversation } from "./conversation/object";

export default app satisfies ExportedHandler<Env>;
