/** The registry: one line per provider. Adding a provider touches nothing else. */
import { hook, type Hook } from "../ingest";
import { easemob } from "./easemob";
import { openim } from "./openim";
import { tencent } from "./tencent";

const registered: Hook[] = [hook(easemob), hook(tencent), hook(openim)];

/** Hooks by provider name, as it appears in `/v1/hooks/<name>`. */
export const hooks: ReadonlyMap<string, Hook> = new Map(registered.map((entry) => [entry.name, entry]));
