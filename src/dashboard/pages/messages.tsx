/** The sign-in form, and the pages that only say something: off, not found, refused, failed. */
import type { Child } from "hono/jsx";
import { Page } from "../layout";

export function LoginPage({ next, error }: { next?: string | undefined; error?: string | undefined }) {
  return (
    <Page title="Sign in" section="none" signedIn={false}>
      <section class="panel login">
        <h1>Sign in</h1>
        {error ? (
          <p class="error-panel" role="alert" data-testid="login-error">
            {error}
          </p>
        ) : null}
        <form method="post" action="/dashboard/login" data-testid="login-form">
          {next ? <input type="hidden" name="next" value={next} /> : null}
          <label>
            Admin token (ADMIN_TOKEN)
            <input name="token" type="password" autocomplete="current-password" required data-testid="token" />
          </label>
          <button type="submit" class="primary" data-testid="sign-in">
            Sign in
          </button>
        </form>
        <p class="muted">The session lasts 12 hours, in a cookie for this dashboard only. Changing ADMIN_TOKEN signs everyone out.</p>
      </section>
    </Page>
  );
}

export function MessagePage({ title, signedIn, testId, children }: { title: string; signedIn: boolean; testId: string; children: Child }) {
  return (
    <Page title={title} section="none" signedIn={signedIn}>
      <section class="panel" data-testid={testId}>
        <h1>{title}</h1>
        {children}
      </section>
    </Page>
  );
}

/** 503: the dashboard is on exactly when the API is (a valid ADMIN_TOKEN). */
export function DisabledPage({ reason }: { reason: string }) {
  return (
    <MessagePage title="The dashboard is off" signedIn={false} testId="dashboard-off">
      <p>{reason}</p>
      <p>
        Set <code>ADMIN_TOKEN</code> (at least 16 characters): in <code>.dev.vars</code> locally, or with <code>npx wrangler secret put ADMIN_TOKEN</code> in
        production. Its value is the token you sign in with. See docs/dashboard.md.
      </p>
    </MessagePage>
  );
}
