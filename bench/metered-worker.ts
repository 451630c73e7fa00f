/**
 * The relay, metered, for `npm run bench` (bench/run.mjs) only: never deployed. It re-exports
 * the relay's fetch handler and subclasses its Durable Object classes under the same names (so the
 * bindings and migrations apply unchanged), handing the parents a metered `ctx` and `env`:
 *
 * - every `ctx.storage.sql.exec` cursor is kept, and rows read/written are summed from the cursors'
 *   `rowsRead`/`rowsWritten` when `/__meter` is asked (cursors count as they are consumed);
 * - `setAlarm`/`deleteAlarm`, `RECEIPTS_KV` puts/deletes/gets and, when bound, `DB` (D1) and
 *   `METRICS` (Analytics Engine) writes are counted, for the objects and the worker apart;
 * - object requests are counted per RPC method and per alarm run (each is one billed request).
 *
 * `GET /__meter` answers the totals as JSON, `POST /__meter/reset` zeroes them; everything else
 * goes to the relay. Counters are module-level: locally every object runs in this isolate.
 * Production code carries no hook for this: it all happens in these subclasses and proxies.
 */
import relay, { CallbackClaims as RelayCallbackClaims, Conversation as RelayConversation } from "../src/index";

/** Which code used a binding: the conversation objects, the claims objects, or the worker itself. */
type Kind = "conversation" | "claims" | "worker";

interface Counters {
  requests: Record<string, number>;
  sqlStatements: number;
  setAlarm: number;
  deleteAlarm: number;
  kvPuts: number;
  kvDeletes: number;
  kvGets: number;
  d1Statements: number;
  d1RowsWritten: number;
  d1RowsRead: number;
  /** Workers Analytics Engine data points (`METRICS.writeDataPoint`), when the binding exists. */
  analyticsPoints: number;
  /** Messages sent to the accept queue (`ACCEPT_QUEUE.send`/`sendBatch`), and batches its consumer took. */
  queueSends: number;
  queueBatches: number;
  /** Rows of cursors already folded in (see `fold`). */
  foldedRowsRead: number;
  foldedRowsWritten: number;
  constructed: number;
  errors: number;
}

const fresh = (): Counters => ({
  requests: {},
  sqlStatements: 0,
  setAlarm: 0,
  deleteAlarm: 0,
  kvPuts: 0,
  kvDeletes: 0,
  kvGets: 0,
  d1Statements: 0,
  d1RowsWritten: 0,
  d1RowsRead: 0,
  analyticsPoints: 0,
  queueSends: 0,
  queueBatches: 0,
  foldedRowsRead: 0,
  foldedRowsWritten: 0,
  constructed: 0,
  errors: 0,
});

const counters: Record<Kind, Counters> = { conversation: fresh(), claims: fresh(), worker: fresh() };
/** Cursors not yet folded, per kind. */
const cursors: Record<Kind, SqlStorageCursor<Record<string, SqlStorageValue>>[]> = { conversation: [], claims: [], worker: [] };
/** Receipts the conversations took, by `accept`'s answer. */
let outcomes: Record<string, number> = {};
let workerRequests = 0;
let since = Date.now();

/**
 * Cursors are consumed synchronously by the relay (inside a transaction or right after `exec`), so
 * all but the newest few are final: fold those into the totals to keep memory bounded.
 */
const FOLD_AT = 20_000;
const KEEP_UNFOLDED = 200;
function fold(kind: Kind, keep: number): void {
  const list = cursors[kind];
  if (list.length <= keep) return;
  const done = list.splice(0, list.length - keep);
  for (const cursor of done) {
    counters[kind].foldedRowsRead += cursor.rowsRead;
    counters[kind].foldedRowsWritten += cursor.rowsWritten;
  }
}

/** A property of a native object, with methods bound to it (else they throw "Illegal invocation"). */
function passThrough(target: object, property: string | symbol): unknown {
  const value = Reflect.get(target, property, target);
  return typeof value === "function" ? value.bind(target) : value;
}

function meteredSql(sql: SqlStorage, kind: Kind): SqlStorage {
  return new Proxy(sql, {
    get(target, property) {
      if (property !== "exec") return passThrough(target, property);
      return (query: string, ...bindings: unknown[]) => {
        const cursor = target.exec(query, ...bindings);
        counters[kind].sqlStatements++;
        cursors[kind].push(cursor);
        if (cursors[kind].length >= FOLD_AT) fold(kind, KEEP_UNFOLDED);
        return cursor;
      };
    },
  });
}

function meteredStorage(storage: DurableObjectStorage, kind: Kind): DurableObjectStorage {
  const sql = meteredSql(storage.sql, kind);
  return new Proxy(storage, {
    get(target, property) {
      if (property === "sql") return sql;
      if (property === "setAlarm") {
        return (...args: Parameters<DurableObjectStorage["setAlarm"]>) => {
          counters[kind].setAlarm++;
          return target.setAlarm(...args);
        };
      }
      if (property === "deleteAlarm") {
        return (...args: Parameters<DurableObjectStorage["deleteAlarm"]>) => {
          counters[kind].deleteAlarm++;
          return target.deleteAlarm(...args);
        };
      }
      return passThrough(target, property);
    },
  });
}

/**
 * The object's own `ctx`, with `storage` shadowed by the metered one. Not a Proxy of `ctx`: the
 * runtime's DurableObject base constructor accepts only a real DurableObjectState ("constructor
 * parameter 1 is not of type 'DurableObjectState'"), so the real one gets an own `storage` property.
 */
function meteredCtx(ctx: DurableObjectState, kind: Kind): DurableObjectState {
  const storage = meteredStorage(ctx.storage, kind);
  Object.defineProperty(ctx, "storage", { value: storage, configurable: true, enumerable: true });
  return ctx;
}

function meteredKv(kv: KVNamespace, kind: Kind): KVNamespace {
  return new Proxy(kv, {
    get(target, property) {
      const value = passThrough(target, property);
      if (typeof value !== "function") return value;
      const count =
        property === "put" ? "kvPuts" : property === "delete" ? "kvDeletes" : property === "get" || property === "getWithMetadata" ? "kvGets" : undefined;
      if (!count) return value;
      return (...args: unknown[]) => {
        counters[kind][count]++;
        return (value as (...args: unknown[]) => unknown)(...args);
      };
    },
  });
}

/** D1 results carry `meta.rows_written`/`rows_read`; statements are unwrapped before `batch`. */
interface D1Like {
  prepare(query: string): unknown;
  batch(statements: unknown[]): Promise<{ meta?: { rows_written?: number; rows_read?: number } }[]>;
  exec(query: string): Promise<unknown>;
}
const realStatement = new WeakMap<object, object>();
function countD1(kind: Kind, result: unknown): void {
  const meta = (result as { meta?: { rows_written?: number; rows_read?: number } } | null)?.meta;
  counters[kind].d1RowsWritten += meta?.rows_written ?? 0;
  counters[kind].d1RowsRead += meta?.rows_read ?? 0;
}
function meteredStatement(statement: object, kind: Kind): object {
  const proxy: object = new Proxy(statement, {
    get(target, property) {
      const value = passThrough(target, property);
      if (typeof value !== "function") return value;
      if (property === "bind") return (...args: unknown[]) => meteredStatement((value as (...a: unknown[]) => object)(...args), kind);
      if (property === "run" || property === "all") {
        return async (...args: unknown[]) => {
          counters[kind].d1Statements++;
          const result = await (value as (...a: unknown[]) => Promise<unknown>)(...args);
          countD1(kind, result);
          return result;
        };
      }
      if (property === "first" || property === "raw") {
        return (...args: unknown[]) => {
          counters[kind].d1Statements++;
          return (value as (...a: unknown[]) => unknown)(...args);
        };
      }
      return value;
    },
  });
  realStatement.set(proxy, statement);
  return proxy;
}
function meteredD1(db: D1Like, kind: Kind): D1Like {
  return new Proxy(db, {
    get(target, property) {
      if (property === "prepare") return (query: string) => meteredStatement(target.prepare(query) as object, kind);
      if (property === "batch") {
        return async (statements: object[]) => {
          counters[kind].d1Statements += statements.length;
          const results = await target.batch(statements.map((statement) => realStatement.get(statement) ?? statement));
          for (const result of results) countD1(kind, result);
          return results;
        };
      }
      return passThrough(target, property);
    },
  });
}

const meteredEnvs: Record<Kind, WeakMap<object, Env>> = { conversation: new WeakMap(), claims: new WeakMap(), worker: new WeakMap() };
/** One proxy per real env and class, so that the relay's per-env caches (settings) keep working. */
function meteredEnv(env: Env, kind: Kind): Env {
  const cached = meteredEnvs[kind].get(env);
  if (cached) return cached;
  const kv = env.RECEIPTS_KV ? meteredKv(env.RECEIPTS_KV, kind) : undefined;
  const db = (env as unknown as { DB?: D1Like }).DB;
  const d1 = db ? meteredD1(db, kind) : undefined;
  const metrics = (env as unknown as { METRICS?: AnalyticsEngineDataset }).METRICS;
  const analytics = metrics
    ? new Proxy(metrics, {
        get(target, property) {
          if (property !== "writeDataPoint") return passThrough(target, property);
          return (...args: Parameters<AnalyticsEngineDataset["writeDataPoint"]>) => {
            counters[kind].analyticsPoints++;
            return target.writeDataPoint(...args);
          };
        },
      })
    : undefined;
  const acceptQueue = (env as unknown as { ACCEPT_QUEUE?: Queue }).ACCEPT_QUEUE;
  const queue = acceptQueue
    ? new Proxy(acceptQueue, {
        get(target, property) {
          const value = passThrough(target, property);
          if (property === "send") {
            return (...args: Parameters<Queue["send"]>) => {
              counters[kind].queueSends++;
              return target.send(...args);
            };
          }
          if (property === "sendBatch") {
            return (...args: Parameters<Queue["sendBatch"]>) => {
              counters[kind].queueSends += [...args[0]].length;
              return target.sendBatch(...args);
            };
          }
          return value;
        },
      })
    : undefined;
  const proxy = new Proxy(env, {
    get(target, property, receiver) {
      if (property === "ACCEPT_QUEUE" && queue) return queue;
      if (property === "RECEIPTS_KV" && kv) return kv;
      if (property === "DB" && d1) return d1;
      if (property === "METRICS" && analytics) return analytics;
      return Reflect.get(target, property, receiver);
    },
  });
  meteredEnvs[kind].set(env, proxy);
  return proxy;
}

const countRequest = (kind: Kind, method: string, n = 1) => {
  const requests = counters[kind].requests;
  requests[method] = (requests[method] ?? 0) + n;
  if (requests[method] === 0) delete requests[method];
};

/** The conversation object's public RPC methods (and `alarm`): each call is one billed request. */
export const CONVERSATION_RPC = [
  "accept",
  "acceptMany",
  "recent",
  "readStates",
  "deliveries",
  "retryDeadLetters",
  "purgeDeadLetters",
  "deliveryCounts",
  "redeliver",
  "alarm",
] as const;
export const CLAIMS_RPC = ["claim"] as const;

export class Conversation extends RelayConversation {
  constructor(ctx: DurableObjectState, env: Env) {
    super(meteredCtx(ctx, "conversation"), meteredEnv(env, "conversation"));
    counters.conversation.constructed++;
  }
}

export class CallbackClaims extends RelayCallbackClaims {
  constructor(ctx: DurableObjectState, env: Env) {
    super(meteredCtx(ctx, "claims"), meteredEnv(env, "claims"));
    counters.claims.constructed++;
  }
}

/** Shadows each listed method the parent has with one that counts the call, then calls the parent's. */
function meterMethods(subclass: { prototype: object }, parent: { prototype: object }, kind: Kind, names: readonly string[]): string[] {
  const metered: string[] = [];
  for (const name of names) {
    const original = (parent.prototype as Record<string, unknown>)[name];
    if (typeof original !== "function") continue;
    metered.push(name);
    Object.defineProperty(subclass.prototype, name, {
      configurable: true,
      writable: true,
      value: async function (this: object, ...args: unknown[]) {
        countRequest(kind, name);
        try {
          const result = await (original as (...a: unknown[]) => unknown).apply(this, args);
          if (kind === "conversation" && name === "accept" && typeof result === "string") outcomes[result] = (outcomes[result] ?? 0) + 1;
          if (kind === "conversation" && name === "acceptMany" && Array.isArray(result)) {
            for (const each of result) if (typeof each === "string") outcomes[each] = (outcomes[each] ?? 0) + 1;
          }
          return result;
        } catch (error) {
          counters[kind].errors++;
          throw error;
        }
      },
    });
  }
  return metered;
}

const meteredMethods = {
  conversation: meterMethods(Conversation, RelayConversation, "conversation", CONVERSATION_RPC),
  claims: meterMethods(CallbackClaims, RelayCallbackClaims, "claims", CLAIMS_RPC),
};

/** Every own method of the parent's prototype, so that the bench can warn about an RPC it does not meter. */
const methodsOf = (parent: { prototype: object }) =>
  Object.getOwnPropertyNames(parent.prototype).filter(
    (name) => name !== "constructor" && typeof Object.getOwnPropertyDescriptor(parent.prototype, name)?.value === "function",
  );

function report(kind: Kind) {
  const c = counters[kind];
  let rowsRead = c.foldedRowsRead;
  let rowsWritten = c.foldedRowsWritten;
  for (const cursor of cursors[kind]) {
    rowsRead += cursor.rowsRead;
    rowsWritten += cursor.rowsWritten;
  }
  const requests = Object.values(c.requests).reduce((sum, n) => sum + n, 0);
  return {
    objectRequests: requests,
    requestsByMethod: c.requests,
    rowsRead,
    rowsWritten,
    sqlStatements: c.sqlStatements,
    setAlarm: c.setAlarm,
    deleteAlarm: c.deleteAlarm,
    kvPuts: c.kvPuts,
    kvDeletes: c.kvDeletes,
    kvGets: c.kvGets,
    d1Statements: c.d1Statements,
    d1RowsWritten: c.d1RowsWritten,
    d1RowsRead: c.d1RowsRead,
    analyticsPoints: c.analyticsPoints,
    queueSends: c.queueSends,
    queueBatches: c.queueBatches,
    objectsConstructed: c.constructed,
    errors: c.errors,
  };
}

/**
 * A conversation's stored receipts read back from its object, a page at a time: how many, how many
 * distinct ids, and whether their sequence numbers only go up (the burst checks none lost or doubled).
 */
async function storedReceipts(env: Env, conversation: string) {
  const stub = env.CONVERSATION.get(env.CONVERSATION.idFromName(conversation));
  const ids = new Set<string>();
  let count = 0;
  let ordered = true;
  let after = 0;
  for (;;) {
    const page = await stub.deliveries("all", 1000, after);
    // The bench's own reads are not the relay's requests.
    countRequest("conversation", "deliveries", -1);
    if (!page || page.length === 0) break;
    for (const delivery of page) {
      count++;
      ids.add(delivery.receiptId);
      if (delivery.seq <= after) ordered = false;
      after = delivery.seq;
    }
  }
  return { count, unique: ids.size, ordered, lastSeq: after };
}

function reset(): void {
  for (const kind of ["conversation", "claims", "worker"] as const) {
    counters[kind] = fresh();
    cursors[kind] = [];
  }
  outcomes = {};
  workerRequests = 0;
  since = Date.now();
}

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/__meter" && request.method === "GET") {
      return Response.json({
        since,
        now: Date.now(),
        workerRequests,
        accepted: outcomes,
        conversation: report("conversation"),
        claims: report("claims"),
        worker: report("worker"),
        metered: meteredMethods,
        parentMethods: { conversation: methodsOf(RelayConversation), claims: methodsOf(RelayCallbackClaims) },
      });
    }
    if (pathname === "/__meter/stored" && request.method === "GET") {
      return Response.json(await storedReceipts(env, new URL(request.url).searchParams.get("conversation") ?? ""));
    }
    if (pathname === "/__meter/reset" && request.method === "POST") {
      reset();
      return new Response(null, { status: 204 });
    }
    workerRequests++;
    return relay.fetch(request, meteredEnv(env, "worker"), ctx);
  },
  async queue(batch, env) {
    counters.worker.queueBatches++;
    return relay.queue(batch, meteredEnv(env, "worker"));
  },
} satisfies ExportedHandler<Env>;
