/**
 * Each registered provider (src/providers/index.ts) made an ingestor (src/ingest.ts): the map the
 * callback routes and /healthz read, by the name in the callback URL `/v1/hooks/<name>`.
 */
import { ingestor, type Ingestor } from "./ingest";
import { registry } from "./providers";

export const providers: ReadonlyMap<string, Ingestor> = new Map(
  registry.map((provider) => {
    const entry = ingestor(provider);
    return [entry.name, entry];
  }),
);
