/**
 * The registry: one line per provider, the list the callback routes and /healthz read. A new
 * provider also needs its name in `providerNames` (receipt.ts), its docs page and its fixtures.
 */
import { ingestor, type Ingestor } from "../ingest";
import { easemob } from "./easemob";
import { instagram } from "./instagram";
import { messenger } from "./messenger";
import { openim } from "./openim";
import { sendbird } from "./sendbird";
import { stream } from "./stream";
import { talkjs } from "./talkjs";
import { tencent } from "./tencent";
import { whatsapp } from "./whatsapp";

const registered: Ingestor[] = [
  ingestor(easemob),
  ingestor(tencent),
  ingestor(openim),
  ingestor(stream),
  ingestor(sendbird),
  ingestor(talkjs),
  ingestor(whatsapp),
  ingestor(messenger),
  ingestor(instagram),
];

/** Ingestors by provider name, as it appears in the callback URL `/v1/hooks/<name>`. */
export const providers: ReadonlyMap<string, Ingestor> = new Map(registered.map((entry) => [entry.name, entry]));
