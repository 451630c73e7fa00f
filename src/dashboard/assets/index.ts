/**
 * The dashboard's static assets, each named by a hash of its content so that it can be cached for
 * a year (`immutable`): a new version has a new name, and the pages link the current one.
 */
import { fnv1a } from "../../claims/shard";
import { DASHBOARD_ICON } from "./icon";
import { DASHBOARD_SCRIPT } from "./script.generated";
import { DASHBOARD_CSS } from "./style";

export interface Asset {
  name: string;
  contentType: string;
  body: string;
}

const hashed = (stem: string, extension: string, body: string) => `${stem}-${fnv1a(body).toString(16).padStart(8, "0")}.${extension}`;

export const STYLESHEET: Asset = { name: hashed("dashboard", "css", DASHBOARD_CSS), contentType: "text/css; charset=utf-8", body: DASHBOARD_CSS };
export const SCRIPT: Asset = { name: hashed("dashboard", "js", DASHBOARD_SCRIPT), contentType: "text/javascript; charset=utf-8", body: DASHBOARD_SCRIPT };

export const ICON: Asset = { name: hashed("icon", "svg", DASHBOARD_ICON), contentType: "image/svg+xml", body: DASHBOARD_ICON };

const byName = new Map([STYLESHEET, SCRIPT, ICON].map((asset) => [asset.name, asset]));

export const assetNamed = (name: string): Asset | undefined => byName.get(name);
export const assetPath = (asset: Asset) => `/dashboard/assets/${asset.name}`;
/** A year, and never revalidated: the name changes with the content. */
export const ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable";
