/**
 * The registry: the one list of providers, one line each, in the order /healthz and the dashboard
 * show them. It imports no pipeline: `src/ingestors.ts` makes each an ingestor for the callback
 * routes and /healthz; scripts and tests iterate this list. A new provider also needs its name in
 * `providerNames` (receipt.ts), its docs page and its fixtures (docs/adding-a-provider.md).
 */
import { easemob } from "./easemob";
import { instagram } from "./instagram";
import { messenger } from "./messenger";
import { openim } from "./openim";
import type { RegisteredProvider } from "./provider";
import { sendbird } from "./sendbird";
import { stream } from "./stream";
import { talkjs } from "./talkjs";
import { tencent } from "./tencent";
import { whatsapp } from "./whatsapp";

export const registry: readonly RegisteredProvider<unknown, unknown>[] = [easemob, tencent, openim, stream, sendbird, talkjs, whatsapp, messenger, instagram];
