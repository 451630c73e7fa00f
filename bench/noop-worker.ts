/** The benchmark's baseline: reads the body and answers a small JSON, nothing else. */
export default {
  async fetch(request: Request): Promise<Response> {
    await request.text();
    return Response.json({ status: "ok" });
  },
};
