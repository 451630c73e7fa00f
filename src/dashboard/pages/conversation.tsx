/**
 * GET /dashboard/conversations/<key>: one conversation from its object (the truth): receipts newest
 * first with their delivery state, read state per reader, the outbox, a replay button and the
 * live tail.
 */
import type { Delivery } from "../../conversation/outbox";
import type { ReadsPage } from "../../conversation/read-state";
import type { ConversationSummary } from "../../queries/conversation-summary";
import { encodeCursor } from "../../queries/conversations";
import { conversationPath, Facts, Page, Time } from "../layout";
import { durationText, messagesText, readersText } from "../format";

export interface ConversationData {
  conversation: string;
  /** Null for a conversation with no receipt yet (shown only with ?watch=1). */
  summary: ConversationSummary | null;
  /** One page of read state, in reader order (READS_PAGE readers), and the number of readers. */
  reads: ReadsPage;
  /** The reader the page starts after; absent on the first page. */
  readsAfter?: string;
  outbox: { pending: Delivery[]; failed: Delivery[] };
  /** The page size of each outbox list. */
  outboxLimit: number;
}

type SummaryReceipt = ConversationSummary["receipts"][number];

type SummaryDelivery = SummaryReceipt["deliveries"][number];

/**
 * Each attempt from the receipt's attempt log per destination (start, status or error, duration;
 * the newest 20, across replays), each line naming its destination when the receipt has several.
 * Attempts made before the log existed (schema v3) show as a count.
 */
function Attempts({ deliveries }: { deliveries: SummaryDelivery[] }) {
  const named = deliveries.length > 1;
  return (
    <ul data-testid="attempts" class="attempts">
      {deliveries.map((delivery) => {
        const to = named ? `${delivery.destination}: ` : "";
        const unlogged = delivery.attempts - delivery.attemptLog.length;
        return (
          <>
            {delivery.attemptLog.map((attempt) => (
              <li data-testid="attempt" data-status={attempt.status ?? ""} data-destination={delivery.destination}>
                {to}
                <Time iso={attempt.at} />
                {` ${attempt.error ?? `answered ${attempt.status ?? "?"}`}, in ${durationText(attempt.ms)}`}
              </li>
            ))}
            {unlogged > 0 && delivery.attemptLog.length === 0 ? (
              <li data-testid="attempt" data-destination={delivery.destination}>{`${to}${delivery.attempts} attempt(s), not logged`}</li>
            ) : null}
            {delivery.nextAttemptAt ? (
              <li>
                {`${to}next attempt `}
                <Time iso={delivery.nextAttemptAt} />
              </li>
            ) : null}
            {delivery.failedAt ? (
              <li>
                {`${to}failed `}
                <Time iso={delivery.failedAt} />
              </li>
            ) : null}
          </>
        );
      })}
    </ul>
  );
}

/** The receipt's delivery to each destination, by name (one line each). */
function Destinations({ deliveries }: { deliveries: SummaryDelivery[] }) {
  if (deliveries.length === 0) return null;
  return (
    <ul class="plain" data-testid="destination-deliveries">
      {deliveries.map((delivery) => (
        <li data-testid="destination-delivery" data-destination={delivery.destination} data-status={delivery.status}>
          <span class="muted">{`${delivery.destination} `}</span>
          <span class={`status status-${delivery.status}`}>{delivery.status}</span>
        </li>
      ))}
    </ul>
  );
}

function ReceiptRow({ receipt }: { receipt: SummaryReceipt }) {
  // A receipt whose delivery row was not found in the pages read counts as pending: it is stored, not yet settled.
  // With several destinations, the badge is the one that stands for the receipt (failed, else pending, else delivered); each is listed under it.
  const status = receipt.delivery?.status ?? "pending";
  return (
    <tr data-testid="receipt-row" data-receipt-id={receipt.id} data-accepted-at={receipt.receivedAt}>
      <td>
        <Time iso={receipt.readAt} />
      </td>
      <td data-testid="readers">{readersText(receipt.readers)}</td>
      <td>{messagesText(receipt)}</td>
      <td>
        <span data-testid="delivery-status" class={`status status-${status}`}>
          {status}
        </span>
        {receipt.deliveries.length > 1 ? <Destinations deliveries={receipt.deliveries} /> : null}
      </td>
      <td>
        <Attempts deliveries={receipt.deliveries} />
      </td>
      <td class="num" data-testid="latency">
        {durationText(receipt.delivery?.latencyMs)}
      </td>
      <td>
        <code>{receipt.id}</code>
        <div class="muted">{receipt.event}</div>
      </td>
    </tr>
  );
}

function Receipts({ summary }: { summary: ConversationSummary | null }) {
  const receipts = summary?.receipts ?? [];
  return (
    <section class="panel">
      <h2>Receipts, newest first</h2>
      <div class="scroll">
        <table data-testid="receipts">
          <thead>
            <tr>
              <th>read at</th>
              <th>readers</th>
              <th>messages</th>
              <th>delivery</th>
              <th>attempts</th>
              <th class="num">latency</th>
              <th>receipt</th>
            </tr>
          </thead>
          <tbody>
            {receipts.length === 0 ? (
              <tr data-testid="no-receipts">
                <td colspan={7} class="muted">
                  No receipt yet: new ones appear here as they arrive.
                </td>
              </tr>
            ) : (
              receipts.map((receipt) => <ReceiptRow receipt={receipt} />)
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Reads({ conversation, page, after }: { conversation: string; page: ReadsPage; after: string | undefined }) {
  const { reads, readers, next } = page;
  return (
    <section class="panel" data-testid="reads">
      <h2>Read state per reader</h2>
      {readers > 0 ? (
        <p class="muted" data-testid="reads-count">
          {`${readers} reader(s), in reader order, ${reads.length} on this page`}
          {after !== undefined ? (
            <>
              {" · "}
              <a href={conversationPath(conversation)} data-testid="reads-first">
                first page
              </a>
            </>
          ) : null}
          {next !== undefined ? (
            <>
              {" · "}
              <a href={`${conversationPath(conversation)}?readers=${encodeCursor(next)}`} data-testid="reads-next">
                next page
              </a>
            </>
          ) : null}
        </p>
      ) : null}
      {reads.length === 0 ? (
        <p class="muted">No reader yet.</p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th>reader</th>
                <th>last read at</th>
                <th>last message</th>
                <th class="num">read up to seq</th>
                <th>read up to time</th>
                <th class="num">unread</th>
              </tr>
            </thead>
            <tbody>
              {reads.map((read) => (
                <tr data-testid="read-row" data-reader={read.reader}>
                  <td>{read.reader}</td>
                  <td>
                    <Time iso={read.lastReadAt} />
                  </td>
                  <td>{read.messageId ?? "-"}</td>
                  <td class="num">{read.seq ?? "-"}</td>
                  <td>
                    <Time iso={read.time} />
                  </td>
                  <td class="num">{read.unreadTotal ?? "-"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function DeliveryTable({ deliveries, status, limit }: { deliveries: Delivery[]; status: "pending" | "failed"; limit: number }) {
  if (deliveries.length === 0) return null;
  return (
    <>
      <h3>{status === "pending" ? "Pending" : "Failed (dead letters)"}</h3>
      <div class="scroll">
        <table data-testid={`outbox-${status}`}>
          <thead>
            <tr>
              <th class="num">seq</th>
              <th>receipt</th>
              <th>destination</th>
              <th>accepted</th>
              <th class="num">attempts</th>
              <th class="num">last status</th>
              <th>last error</th>
              <th>{status === "pending" ? "next attempt" : "failed at"}</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.map((delivery) => (
              <tr data-testid="outbox-row" data-receipt-id={delivery.receiptId} data-destination={delivery.destination} data-status={delivery.status}>
                <td class="num">{delivery.seq}</td>
                <td>
                  <code>{delivery.receiptId}</code>
                </td>
                <td data-testid="outbox-destination">{delivery.destination}</td>
                <td>
                  <Time iso={delivery.acceptedAt} />
                </td>
                <td class="num">{delivery.attempts}</td>
                <td class="num">{delivery.lastStatus ?? "-"}</td>
                <td>{delivery.lastError ?? "-"}</td>
                <td>
                  <Time iso={status === "pending" ? delivery.nextAttemptAt : delivery.failedAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {deliveries.length === limit ? <p class="muted">{`The first ${limit} are shown.`}</p> : null}
    </>
  );
}

function Outbox({ data }: { data: ConversationData }) {
  const { summary, outbox, conversation } = data;
  const counts = summary?.deliveries ?? { pending: 0, failed: 0 };
  const byDestination = Object.entries(summary?.deliveries.byDestination ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return (
    <section class="panel" data-testid="outbox">
      <h2>Outbox</h2>
      <p>
        <span data-testid="outbox-pending">{`${counts.pending} pending`}</span>
        {", "}
        <span data-testid="outbox-failed">{`${counts.failed} failed`}</span>
      </p>
      {summary?.lastError !== undefined ? (
        <p class="muted">
          {"Last dead letter's error: "}
          <span>{summary.lastError}</span>
        </p>
      ) : null}
      {byDestination.length > 1 ? (
        <ul class="plain" data-testid="outbox-destinations">
          {byDestination.map(([name, count]) => (
            <li data-testid="outbox-destination-counts" data-destination={name}>
              {`${name}: ${count.pending} pending, ${count.failed} failed `}
              {count.failed > 0 ? (
                <form method="post" action={`${conversationPath(conversation)}/replay`} class="inline" data-testid="replay-conversation-destination">
                  <input type="hidden" name="back" value="conversation" />
                  <input type="hidden" name="destination" value={name} />
                  <button type="submit">{`Replay ${name}'s dead letters`}</button>
                </form>
              ) : null}
            </li>
          ))}
        </ul>
      ) : null}
      <form method="post" action={`${conversationPath(conversation)}/replay`} data-testid="replay-conversation">
        <input type="hidden" name="back" value="conversation" />
        <button type="submit" class="danger" data-testid="replay-conversation-button">
          Replay this conversation's dead letters
        </button>
      </form>
      <DeliveryTable deliveries={outbox.pending} status="pending" limit={data.outboxLimit} />
      <DeliveryTable deliveries={outbox.failed} status="failed" limit={data.outboxLimit} />
    </section>
  );
}

function LiveTail({ conversation }: { conversation: string }) {
  return (
    <section class="panel" data-testid="live-tail" data-live-url={`${conversationPath(conversation)}/live`}>
      <h2>
        {"Live tail: "}
        <span data-testid="live-status" class="live-status live-connecting">
          connecting
        </span>
      </h2>
      <p class="muted" data-testid="live-waiting">
        Waiting for new receipts and delivery attempts. Events missed while reconnecting are not replayed: reload to see the current state.
      </p>
      <ol class="plain live-events" data-testid="live-events"></ol>
    </section>
  );
}

export function ConversationPage({ data, requeued }: { data: ConversationData; requeued?: number | undefined }) {
  const { summary, conversation } = data;
  return (
    <Page title={conversation} section="conversations" signedIn={true}>
      <h1 data-testid="conversation-key">{conversation}</h1>
      {requeued !== undefined ? (
        <p class="flash" data-testid="flash">
          {`${requeued} dead letter(s) re-queued.`}
        </p>
      ) : null}
      {summary ? (
        <section class="panel" data-testid="conversation-summary">
          <Facts
            items={[
              ["provider", summary.provider],
              ["app", summary.app],
              ["chat", summary.chat],
              ["accepted", String(summary.accepted)],
              ["last delivered", <Time iso={summary.lastDeliveredAt} />],
              ["last latency", durationText(summary.lastLatencyMs)],
              ["oldest dead letter", <Time iso={summary.oldestFailedAt} />],
            ]}
          />
        </section>
      ) : (
        <p class="notice" data-testid="watching">
          No receipt of this conversation yet. This page waits for the first one on the live tail.
        </p>
      )}
      <LiveTail conversation={conversation} />
      <Receipts summary={summary} />
      <Reads conversation={conversation} page={data.reads} after={data.readsAfter} />
      <Outbox data={data} />
    </Page>
  );
}
