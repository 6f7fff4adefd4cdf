package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/caseaccess"
	"github.com/dirsyncd/dirsyncd/server"
	"github.com/dirsyncd/dirsyncd/store"
)

// The case-access feature: admin routes under /api/v1/cases, the expiry
// timer (a component; it works only on the replica holding the lease) and
// `dirsyncd cases create|invite|list|revoke|expire|access`.
func init() {
	register(feature{
		Name:     "caseaccess",
		Commands: func(app *App) []*cobra.Command { return []*cobra.Command{newCasesCmd(app)} },
		Setup:    setupCaseAccess,
	})
}

// Test hooks (nil in production): the clock of the case-access service and
// its expiry timer, and a callback after every expiry pass.
var (
	testCaseClock caseaccess.Clock
	testCaseSweep func(caseaccess.SweepResult)
)

// caseStore is implemented by store/sqlstore.
type caseStore interface {
	CaseAccess() caseaccess.Store
}

func caseAccessStore(st store.Store) (caseaccess.Store, error) {
	cs, ok := st.(caseStore)
	if !ok {
		return nil, fmt.Errorf("caseaccess: the %T store has no case-access tables", st)
	}
	return cs.CaseAccess(), nil
}

func (a *App) caseService(st store.Store) (*caseaccess.Service, caseaccess.Store, error) {
	cs, err := caseAccessStore(st)
	if err != nil {
		return nil, nil, err
	}
	now := a.Now
	if testCaseClock != nil {
		now = testCaseClock.Now
	}
	svc, err := caseaccess.New(caseaccess.Options{Store: cs, Now: now, Log: a.Logger,
		ChambersDomains: a.Config.CaseAccess.ChambersDomains})
	if err != nil {
		return nil, nil, err
	}
	return svc, cs, nil
}

func setupCaseAccess(ctx context.Context, app *App) error {
	svc, cs, err := app.caseService(app.Store)
	if err != nil {
		return err
	}
	c := app.Config.CaseAccess.Expiry
	exp, err := caseaccess.NewExpirer(caseaccess.ExpirerOptions{Service: svc, Store: cs, Holder: replicaID(),
		LeaseTTL: c.LeaseTTL, MaxWait: c.MaxWait, Batch: c.Batch, Log: app.Logger, Clock: testCaseClock, OnSweep: testCaseSweep})
	if err != nil {
		return err
	}
	svc.SetOnChange(exp.Kick)
	api := caseaccess.NewAPI(svc, func(r *http.Request) audit.Meta {
		p, _ := auth.PrincipalFrom(r.Context())
		return audit.Meta{Actor: p.Actor(), RequestID: server.RequestID(r.Context())}
	}, app.Logger)
	for _, rt := range api.Routes() {
		app.Server.Handle(rt.Pattern, rt.Scope, rt.Handler)
	}
	app.Go("caseaccess-expiry", exp.Run)
	return nil
}

// replicaID names this process as a lease holder.
func replicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// cliActor is the audit actor of CLI changes: --actor, else cli:<OS user>.
func cliActor(flag string) string {
	if flag != "" {
		return flag
	}
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return "cli:" + name
}

// caseErr turns a refused request into a usage-style exit (2) naming the
// field; other errors fail (1).
func caseErr(err error) error {
	if ce, ok := caseaccess.AsError(err); ok {
		return &exitError{code: exitConfig, err: errors.New(ce.Error())}
	}
	return err
}

func newCasesCmd(app *App) *cobra.Command {
	var actor string
	cmd := &cobra.Command{Use: "cases", Short: "Case access: invites, group and domain grants, decisions"}
	cmd.PersistentFlags().StringVar(&actor, "actor", "", "audit actor for changes (default cli:<OS user>)")
	with := func(fn func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			st, err := app.open(ctx)
			if err != nil {
				return err
			}
			svc, _, err := app.caseService(st)
			if err != nil {
				return err
			}
			return caseErr(fn(ctx, cmd, svc, audit.Meta{Actor: cliActor(actor)}))
		}
	}

	var ref, title string
	var defendants, owners []string
	create := &cobra.Command{
		Use:   "create --case REF [--title T] [--defendant NAME]... [--owner USER]...",
		Short: "Create a case; owners get a prosecutor invite (they can invite others)",
		Args:  cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			c, invs, err := svc.CreateCase(ctx, m, caseaccess.CaseInput{Ref: ref, Title: title, Defendants: defendants, Owners: owners})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "case %s created with %d owner invite(s)\n", c.Ref, len(invs))
			return nil
		}),
	}
	create.Flags().StringVar(&ref, "case", "", "case reference")
	create.Flags().StringVar(&title, "title", "", "case title")
	create.Flags().StringArrayVar(&defendants, "defendant", nil, "a defendant (repeat)")
	create.Flags().StringArrayVar(&owners, "owner", nil, "a user (id, userName or e-mail) given a prosecutor invite (repeat)")

	var in caseaccess.InviteInput
	var role, expires string
	invite := &cobra.Command{
		Use:   "invite --case REF --user USER --inviter USER --role ROLE [--defendant NAME]... [--expires TIME] [--message TEXT]",
		Short: "Invite one user to a case (the invitee and the inviter are notified)",
		Long: `invite gives USER access to the case with a case role (` + rolesHelp() + `).
A defence-advocate invite names at least one --defendant. --expires takes an
RFC 3339 time or a duration from now (e.g. 72h); the access is revoked then.
The inviter must hold a granting invite on the case.`,
		Args: cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			in.CaseRef, in.Role = ref, caseaccess.Role(role)
			if expires != "" {
				t, err := parseWhen(expires, app.Now())
				if err != nil {
					return &caseaccess.Error{Kind: caseaccess.KindInvalid, Field: "expires", Msg: err.Error()}
				}
				in.ExpiresAt = &t
			}
			inv, err := svc.Invite(ctx, m, in)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "invite %s: %s\n", inv.ID, describeInvite(inv))
			return nil
		}),
	}
	invite.Flags().StringVar(&ref, "case", "", "case reference")
	invite.Flags().StringVar(&in.User, "user", "", "the invitee (id, userName or e-mail)")
	invite.Flags().StringVar(&in.Inviter, "inviter", "", "the inviting user (id, userName or e-mail)")
	invite.Flags().StringVar(&role, "role", "", "case role: "+rolesHelp())
	invite.Flags().StringArrayVar(&in.Defendants, "defendant", nil, "a defendant the invitee represents (repeat)")
	invite.Flags().StringVar(&expires, "expires", "", "expiry: RFC 3339 time or duration from now")
	invite.Flags().StringVar(&in.Message, "message", "", "message to the invitee")

	var all bool
	list := &cobra.Command{
		Use:   "list --case REF [--all]",
		Short: "List a case's invites (live ones; --all includes revoked and expired) and grants",
		Args:  cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			v, err := svc.GetCase(ctx, ref)
			if err != nil {
				return err
			}
			invs, err := svc.ListInvites(ctx, ref, all)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintf(w, "case %s\t%s\tdefendants: %s\n", v.Ref, v.Title, strings.Join(v.Defendants, ", "))
			fmt.Fprintln(w, "INVITE\tUSER\tROLE\tDEFENDANTS\tEXPIRES\tSTATE")
			for _, i := range invs {
				state := "live"
				if i.RevokedAt != nil {
					state = i.RevokeReason + " " + i.RevokedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.UserID, i.Role, strings.Join(i.Defendants, ","), fmtTime(i.ExpiresAt), state)
			}
			for _, g := range v.GroupGrants {
				fmt.Fprintf(w, "group %s\tusual role %s\tlocation %s\n", g.ID, g.UsualRole, orDefault(g.Location, "all"))
			}
			for _, g := range v.DomainGrants {
				fmt.Fprintf(w, "domain %s\t%s\tdefendants %s\tlocation %s\n", g.ID, g.Domain, strings.Join(g.Defendants, ","), orDefault(g.Location, "all"))
			}
			return w.Flush()
		}),
	}
	list.Flags().StringVar(&ref, "case", "", "case reference")
	list.Flags().BoolVar(&all, "all", false, "include revoked and expired invites")

	var inviteID string
	revoke := &cobra.Command{
		Use:   "revoke --case REF --invite ID",
		Short: "Revoke an invite now",
		Args:  cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			inv, err := svc.Revoke(ctx, m, ref, inviteID)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "invite %s revoked at %s\n", inv.ID, inv.RevokedAt.Format(time.RFC3339))
			return nil
		}),
	}
	revoke.Flags().StringVar(&ref, "case", "", "case reference")
	revoke.Flags().StringVar(&inviteID, "invite", "", "invite id")

	var at string
	var never bool
	expire := &cobra.Command{
		Use:   "expire --case REF --invite ID (--at TIME | --never)",
		Short: "Change an invite's expiry (RFC 3339 time or duration from now), or remove it",
		Args:  cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			var exp *time.Time
			switch {
			case never && at != "":
				return usageError{errors.New("cases expire: give --at or --never, not both")}
			case never:
			case at == "":
				return usageError{errors.New("cases expire: --at TIME or --never is required")}
			default:
				t, err := parseWhen(at, app.Now())
				if err != nil {
					return &caseaccess.Error{Kind: caseaccess.KindInvalid, Field: "at", Msg: err.Error()}
				}
				exp = &t
			}
			inv, err := svc.SetExpiry(ctx, m, ref, inviteID, exp)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "invite %s expires %s\n", inv.ID, fmtTime(inv.ExpiresAt))
			return nil
		}),
	}
	expire.Flags().StringVar(&ref, "case", "", "case reference")
	expire.Flags().StringVar(&inviteID, "invite", "", "invite id")
	expire.Flags().StringVar(&at, "at", "", "new expiry: RFC 3339 time or duration from now")
	expire.Flags().BoolVar(&never, "never", false, "remove the expiry")

	var who string
	access := &cobra.Command{
		Use:   "access --case REF --user USER",
		Short: "Decide whether a user may access a case (records the first access)",
		Args:  cobra.NoArgs,
		RunE: with(func(ctx context.Context, cmd *cobra.Command, svc *caseaccess.Service, m audit.Meta) error {
			d, err := svc.Decide(ctx, m, ref, who)
			if err != nil {
				return err
			}
			return writeJSONOut(cmd.OutOrStdout(), d)
		}),
	}
	access.Flags().StringVar(&ref, "case", "", "case reference")
	access.Flags().StringVar(&who, "user", "", "user (id, userName or e-mail)")

	cmd.AddCommand(create, invite, list, revoke, expire, access)
	return cmd
}

func rolesHelp() string {
	var b []string
	for _, r := range caseaccess.Roles {
		b = append(b, string(r))
	}
	return strings.Join(b, ", ")
}

// parseWhen reads an RFC 3339 time or a duration from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func describeInvite(i caseaccess.Invite) string {
	s := fmt.Sprintf("user %s on case %s as %s", i.UserID, i.CaseRef, i.Role)
	if len(i.Defendants) > 0 {
		s += " for " + strings.Join(i.Defendants, ", ")
	}
	return s + ", expires " + fmtTime(i.ExpiresAt)
}
