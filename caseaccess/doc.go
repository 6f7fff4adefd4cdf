// Package caseaccess owns access to court cases (DOMAIN.md "Case access",
// seed 002): individual invites with a case role, defendants and an optional
// expiry; group grants (users with a usual role, optionally at a location);
// e-mail-domain grants (a solicitor firm's secure-mail domain, tied to
// defendants); the access decision with its record of first access and the
// "already accessed" retention; the expiry timer that revokes invites when
// they expire; and the admin API handlers.
//
// Rules, and the choices made where the business text is silent:
//
//   - A case must exist (created with its defendants) before anything is
//     granted on it; unknown case or user is a 404 naming the field.
//   - A defence-advocate invite names at least one defendant, each one a
//     defendant of the case (when the case lists defendants).
//   - Expiry, when given, must be after now (the injected clock).
//   - The inviter must be a user who currently has access to the case
//     through a live invite with a granting role (prosecutor or outside
//     prosecuting advocate). Those same users are "the people who can grant
//     access" listed in a denied decision. A case's first granting invites
//     are made when the case is created (its owners); the audit actor is the
//     API token or CLI operator, the inviter is the user named in the request.
//   - Only one live invite per (case, user): a second one is a 409.
//   - A domain grant's domain must be a well-formed DNS name (lower-cased;
//     letters, digits, hyphens; at least two labels; alphabetic TLD).
//     A domain is tied to a firm through the e-mail addresses of that firm's
//     users: a user whose e-mail is at the domain, or — for a CJSM domain
//     "x.cjsm.net" — at the firm's ordinary domain "x", ties the domain to
//     the user's primary firm and to every firm the user is a member of.
//     If any such firm is of type CHAMBERS the grant is refused, and so is
//     any domain listed in caseAccess.chambersDomains (config), which covers
//     chambers that have no users in dirsyncd yet.
//   - Usual role and location come from the user's attributes
//     (directory.User.UsualRole/Location, set by LDAP's attribute map and
//     SCIM's dirsyncd extension; the CWA API carries neither) and are
//     compared case-insensitively. A grant with an empty location applies to
//     every location.
//   - Decision order: a live invite, then a group grant, then a domain
//     grant, then a retained access. The first allowed access is recorded
//     (audit "case.access.first", one INSERT); the record also keeps the
//     grant used last and the list of every group and domain grant the user
//     has accessed the case through (audit "case.access.via" when either
//     changes; a repeated decision through a known grant writes nothing).
//     Removing a group or domain grant keeps the access of the users who
//     accessed the case through it at any time and whom it still covered
//     when removed (audit "case.access.retain" per user): they keep access
//     with that provenance (and the grant's defendants). Users who never
//     accessed through it — or whose usual role, location or e-mail had
//     already moved them out of it — lose it. Revoked or expired invites are
//     never retained: expiry removes access. A denied decision lists the
//     active users with a live granting invite and the usual roles (groups)
//     that have access.
//   - Expiry: the Expirer runs on the replica holding the store lease
//     "caseaccess-expiry"; it sleeps until the store's next expiry (re-read
//     at start, after every change made through this process — Kick — and
//     at least every maxWait for changes made elsewhere), revokes every due
//     invite in batches, each with an audit event "case.invite.expire" and
//     two outbox notifications (invitee, inviter). A missed expiry (daemon
//     down) is applied at the next start. Making an invite also writes the
//     two notifications.
package caseaccess
