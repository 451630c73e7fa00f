/** Small DOM helpers. Everything received is written with textContent/setAttribute, never as HTML. */
import { timeText } from "../format";

type Attributes = Record<string, string | number | null | undefined>;

/** An element with these attributes (absent values left out) and this text. */
export function el(tag: string, attributes?: Attributes | null, text?: string | null): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/** A <time> written as the pages write it. */
export const timeNode = (iso: string) => el("time", { datetime: iso }, timeText(iso));

/** The element with this data-testid inside `scope`, or null. */
export const byTestId = (scope: ParentNode, testId: string) => scope.querySelector<HTMLElement>(`[data-testid="${testId}"]`);

/** A live tail's status badge: connecting, live or reconnecting. */
export function showState(node: HTMLElement, state: string): void {
  node.textContent = state;
  node.className = `live-status live-${state}`;
}
