/** Builds real, signed provider callbacks from the providers' sample bodies, and sends them. */
import { exports } from "cloudflare:workers";
import easemobChannelAck from "../fixtures/easemob-channel_ack.json";
import easemobGroupReadAck from "../fixtures/easemob-read_ack-group.json";
import easemobSingleReadAck from "../fixtures/easemob-read_ack-single.json";
import openimGroupRead from "../fixtures/openim-callbackAfterGroupMsgReadCommand.json";
import openimSingleRead from "../fixtures/openim-callbackAfterSingleMsgReadCommand.json";
import tencentMsgReadReceipt from "../fixtures/tencent-C2C.CallbackAfterMsgReadReceipt.json";
import tencentMsgReport from "../fixtures/tencent-C2C.CallbackAfterMsgReport.json";
import tencentGroupReadReceipt from "../fixtures/tencent-Group.CallbackAfterReadReceipt.json";
import { signEasemob } from "../../src/providers/easemob";
import { signTencent } from "../../src/providers/tencent";
import { testSettings } from "./settings";

export const samples = {
  easemob: { single: easemobSingleReadAck, group: easemobGroupReadAck, channel: easemobChannelAck },
  tencent: { report: tencentMsgReport, group: tencentGroupReadReceipt, receipt: tencentMsgReadReceipt },
  openim: { single: openimSingleRead, group: openimGroupRead },
};

export const EASEMOB_SECRETS = testSettings.EASEMOB_SECRET.split(",");
export const TENCENT_APP = "1400000001";
export const TENCENT_TOKEN = testSettings.TENCENT_TOKEN;
export const OPENIM_TOKEN = testSettings.OPENIM_TOKEN;
export const ADMIN_TOKEN = testSettings.ADMIN_TOKEN;

/** A deep copy with overrides, so tests never mutate the shared samples. */
export function copy<T extends object>(sample: T, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...structuredClone(sample), ...overrides };
}

/** Easemob body with a fresh timestamp and a real signature. */
export async function signedEasemob(
  body: Record<string, unknown>,
  { secret = EASEMOB_SECRETS[0]!, timestamp = Date.now() }: { secret?: string; timestamp?: number } = {},
): Promise<Record<string, unknown>> {
  const callId = String(body.callId);
  return { ...body, timestamp, security: await signEasemob(callId, secret, timestamp) };
}

export async function tencentPath(
  command: string,
  { sdkAppId = TENCENT_APP, token = TENCENT_TOKEN as string | null, requestTime = Math.floor(Date.now() / 1000), platform = "iOS" } = {},
): Promise<string> {
  const query = new URLSearchParams({ SdkAppid: sdkAppId, CallbackCommand: command, contenttype: "json", ClientIP: "127.0.0.1", OptPlatform: platform });
  if (token !== null) {
    query.set("RequestTime", String(requestTime));
    query.set("Sign", await signTencent(token, requestTime));
  }
  return `/v1/hooks/tencent?${query}`;
}

export const openimPath = (command: string, token: string = OPENIM_TOKEN) => `/v1/hooks/openim/${token}/${command}`;

export function send(path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  const { json, ...rest } = init;
  const body = json === undefined ? rest.body : JSON.stringify(json);
  return exports.default.fetch(
    new Request(`http://relay.test${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      ...rest,
      ...(body !== undefined ? { body } : {}),
    }),
  );
}

export function api(path: string, init: RequestInit = {}, token: string | null = ADMIN_TOKEN): Promise<Response> {
  return exports.default.fetch(
    new Request(`http://relay.test${path}`, {
      ...init,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) },
    }),
  );
}

/** A unique string per call, to keep tests' conversations apart. */
export function unique(prefix: string): string {
  return `${prefix}${crypto.randomUUID().slice(0, 8)}`;
}
