/**
 * The dashboard's icon, served as /dashboard/assets/icon-<hash>.svg and linked from every page, so
 * that a browser does not ask for /favicon.ico (a 404 in its console). Attributes only, no
 * `<style>` or script: the CSP's `img-src 'self'` is all it needs.
 */
export const DASHBOARD_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1f6feb"/><path d="M8 16.5l5 5L24 10.5" fill="none" stroke="#fff" stroke-width="3.5" stroke-linecap="round" stroke-linejoin="round"/></svg>
`;
