// Command dirsyncd is the daemon and its admin CLI, and the only place
// where concrete types meet (config, store backends, server, scheduler,
// features).
//
// Commands:
//
//	dirsyncd serve                 run the daemon (HTTP API, SCIM, scheduler) until SIGINT/SIGTERM
//	dirsyncd migrate               apply database migrations and exit
//	dirsyncd check-config          validate the configuration (exit 0, or 2 printing every problem)
//	dirsyncd run JOB               run a configured job now, in the foreground (trigger=manual)
//	dirsyncd audit verify [--json] verify the audit hash chain (exit 1 listing every problem)
//	dirsyncd audit list [--user U] [--actor A] [--since T] [--limit N] [--json]
//	dirsyncd version
//
// Every command but version takes --config FILE (else $DIRSYNCD_CONFIG,
// else the embedded configs/dev.yaml). Exit codes: 0 ok, 1 failure (store
// unreachable, run failed or aborted, audit tampered), 2 invalid
// configuration or command line.
//
// Logging: one zap logger built here from the configuration (console in
// development, JSON in production, on stderr); components get named
// children (app.Logger.Named("scim")). In development, serve prints the
// development token once to stdout, never through the logger.
//
// # Plugging in a feature
//
// A feature adds a file named after itself (cmd/dirsyncd/scim.go,
// ldap.go, cwa.go, mapping.go, reconcile.go, caseaccess.go) that calls
// register from init. The core never imports feature packages; only these
// files do. Every field of feature is optional:
//
//	package main
//
//	func init() {
//		register(feature{
//			Name: "ldap",
//			// CLI commands; use app.open(ctx) inside RunE for the store.
//			Commands: func(app *App) []*cobra.Command {
//				return []*cobra.Command{{
//					Use: "ldap-test", Short: "Bind and search once",
//					RunE: func(cmd *cobra.Command, _ []string) error {
//						st, err := app.open(cmd.Context())
//						...
//					},
//				}}
//			},
//			// Job implementations by kind (config.JobKinds). They run with
//			// the store open: use app.Store, run.Meta("ldap:"+name) for
//			// audit, run.Add("created", n) for counts, run.Log for logs.
//			Jobs: func(app *App) map[string]scheduler.JobFunc {
//				return map[string]scheduler.JobFunc{
//					"ldap-full": func(ctx context.Context, run *scheduler.RunContext) error {
//						return ldapsync.New(app.Config.LDAP, app.Store, run.Log).Full(ctx, run)
//					},
//				}
//			},
//			// serve only, after the store is open and before listening:
//			// mount routes, register metrics, start background loops.
//			Setup: func(ctx context.Context, app *App) error {
//				app.Server.Handle("/scim/v2/", auth.ScopeSCIM, scimHandler)
//				app.Metrics.Registry.MustRegister(myCounter)
//				app.Go("ldap-watch", watcher.Run) // Run(ctx) error, blocks until ctx ends
//				return nil
//			},
//		})
//	}
//
// A configured job whose kind no feature implements makes serve and run
// fail at start and check-config report it.
//
// # Lifecycle
//
// serve: signal.NotifyContext(SIGINT, SIGTERM) → open the store (PostgreSQL
// retries for store.connectTimeout) and migrate → features' Setup → an
// errgroup of the HTTP server, the scheduler and the features' components,
// each Run(ctx) error. When the context ends, the server drains requests
// and the scheduler lets the run in flight finish, both within
// server.shutdownTimeout; a run still going is cancelled and recorded as
// aborted. If one component fails, the others are stopped and serve exits 1.
package main
