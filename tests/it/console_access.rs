//! The console's door and its locks, over HTTP against `leadrelay serve`'s router: signing in
//! (hardened cookies, the login form's own CSRF token, the per-login throttle, no open
//! redirect), roles (a rep sees their leads only, a manager their team, an operator all),
//! CSRF on every action, and the actions themselves (claim, re-route, close, out-of-office)
//! with their audit entries.

use std::time::Duration;

use jiff::Timestamp;
use leadrelay_shared::model::LeadState;
use leadrelay_shared::ports::{ConsoleStore, LeadStore};
use leadrelay_shared::routing::away_until_counter;

use crate::support::console::{
    cookie_value, hidden, sign_in_form, ConsoleSession, ALICE, MANAGER, OPERATOR,
};
use crate::support::{eventually, example_config, sample, Server};

/// The sample EMEA lead from a new person at `domain` (their own address and no phone number,
/// so no lead merges into another). `maple-software.ca` (Canada) and `acme-robotics.com` (US)
/// go to the Americas pool (alice and dana in turn; a domain then stays with the rep who got
/// it first), `initech.co.uk` (UK) to EMEA (bruno, fatima).
fn lead_at(domain: &str, name: &str) -> Vec<u8> {
    let text = String::from_utf8(sample("02-capture-emea-pricing.json")).expect("utf-8");
    let local = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let edited = text
        .replace(
            "tom.baker@sales.initech.co.uk",
            &format!("{local}@{domain}"),
        )
        .replace("\"phone\": \"+44 20 7946 0321\",", "")
        .replace("\"Tom Baker\"", &format!("{name:?}"));
    assert!(edited.contains(&format!("{local}@{domain}")) && !edited.contains("7946"));
    edited.into_bytes()
}

async fn routed(server: &Server, event_id: &str, body: &[u8]) -> String {
    let answer = server.send("website", event_id, body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let id = answer.body["lead_id"].as_str().expect("lead id").to_owned();
    server.wait_for_state(&id, "notified").await;
    id
}

async fn owner(server: &Server, id: &str) -> String {
    let lead = server.db.get_lead(id).await.expect("read").expect("lead");
    lead.assignment.expect("assigned").owner.id().to_owned()
}

#[tokio::test]
async fn signing_in_sets_a_hardened_session_cookie_and_pages_carry_strict_headers() {
    let server = Server::start().await;
    let answer = sign_in_form(&server.base, OPERATOR.0, OPERATOR.1, "/console/people").await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.location.as_deref(), Some("/console/people"));
    let cookie = answer
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-leadrelay-session="))
        .expect("session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    assert!(
        !cookie.contains("Domain"),
        "a __Host- cookie names no domain: {cookie}"
    );

    let console = ConsoleSession::sign_in(&server, OPERATOR).await;
    let response = console
        .http
        .get(format!("{}/console/leads", server.base))
        .header(
            "cookie",
            format!("__Host-leadrelay-session={}", console.session),
        )
        .send()
        .await
        .expect("page");
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // The store keeps the id's digest, never the id itself.
    let now = Timestamp::now();
    assert!(server
        .db
        .session(&console.session, now)
        .await
        .expect("read")
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_five_in_a_row_lock_the_login() {
    let server = Server::start().await;
    for _ in 0..5 {
        let answer = sign_in_form(&server.base, MANAGER.0, "not-the-password", "/console").await;
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("Wrong login or password."));
        assert!(cookie_value(&answer.set_cookies, "__Host-leadrelay-session").is_none());
    }
    // Locked for the window: even the right password is not checked.
    let locked = sign_in_form(&server.base, MANAGER.0, MANAGER.1, "/console").await;
    assert_eq!(locked.status, 429);
    // Another login is not affected, and an unknown login gets the same answer as a wrong
    // password.
    let unknown = sign_in_form(&server.base, "nobody@yourco.example", "whatever", "/").await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Wrong login or password."));
    ConsoleSession::sign_in(&server, OPERATOR).await;

    let audit = server
        .db
        .actions_since(Timestamp::now() - jiff::SignedDuration::from_mins(5), 50)
        .await
        .expect("audit");
    let refused = audit
        .iter()
        .filter(|a| a.action == "sign-in-refused" && a.login == MANAGER.0)
        .count();
    assert_eq!(refused, 5, "{audit:?}");
    assert!(audit
        .iter()
        .any(|a| a.action == "sign-in" && a.login == OPERATOR.0));
    server.stop().await;
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_cookie_and_never_redirects_off_the_console() {
    let server = Server::start().await;
    let http = crate::support::console::no_redirects();
    // A sign-in posted from elsewhere (no login cookie): login CSRF.
    let forged = http
        .post(format!("{}/console/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "login={}&password={}&login_csrf=guessed&next=%2Fconsole",
            OPERATOR.0, OPERATOR.1
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("set-cookie").is_none_or(|c| !c
        .to_str()
        .unwrap_or_default()
        .contains("leadrelay-session=")));

    for hostile in [
        "https://evil.example/",
        "//evil.example/console",
        "/console\\@evil.example",
    ] {
        let answer = sign_in_form(&server.base, OPERATOR.0, OPERATOR.1, hostile).await;
        assert_eq!(
            answer.location.as_deref(),
            Some("/console/leads"),
            "{hostile}"
        );
    }
    // Signed out, a page sends the browser to sign in and back.
    let page = http
        .get(format!("{}/console/people", server.base))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/console/login?next=%2Fconsole%2Fpeople"
    );
    server.stop().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_and_needs_the_csrf_token() {
    let server = Server::start().await;
    let console = ConsoleSession::sign_in(&server, ALICE).await;
    let forged = console.post_raw("/console/logout", &[]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(console.get("/console/leads").await.status, 200);

    let out = console.post("/console/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("/console/login"));
    let after = console.get("/console/leads").await;
    assert_eq!(after.status, 303, "the old cookie opens nothing");
    server.stop().await;
}

#[tokio::test]
async fn a_rep_sees_only_their_leads_and_a_manager_only_their_team() {
    let server = Server::start().await;
    let first = routed(
        &server,
        "evt-americas-1",
        &lead_at("maple-software.ca", "Ann Americas"),
    )
    .await;
    let second = routed(
        &server,
        "evt-americas-2",
        &lead_at("maple-software.ca", "Bob Americas"),
    )
    .await;
    let emea = routed(
        &server,
        "evt-emea-1",
        &lead_at("initech.co.uk", "Eve Europe"),
    )
    .await;
    let (alices, danas) = match owner(&server, &first).await.as_str() {
        "alice" => (first.clone(), second.clone()),
        _ => (second.clone(), first.clone()),
    };
    assert_eq!(owner(&server, &alices).await, "alice");
    assert_eq!(owner(&server, &danas).await, "dana");
    assert!(["bruno", "fatima"].contains(&owner(&server, &emea).await.as_str()));

    let alice = ConsoleSession::sign_in(&server, ALICE).await;
    let list = alice.get("/console/leads").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(&alices), "alice's lead is listed");
    assert!(!list.body.contains(&danas), "dana's lead is not");
    assert!(!list.body.contains(&emea) && !list.body.contains("Eve Europe"));
    let rows = alice.get("/console/leads/rows").await;
    assert!(rows.body.contains(&alices) && !rows.body.contains(&danas));
    // Another rep's lead is answered as if it did not exist.
    let other = alice.get(&format!("/console/leads/{danas}")).await;
    assert_eq!(other.status, 404);
    assert!(!other.body.contains("Bob Americas"));
    // A rep does not re-route or close, even with a valid token.
    let reroute = alice
        .post(
            &format!("/console/leads/{alices}/reroute"),
            &[("reason", "mine really")],
        )
        .await;
    assert_eq!(reroute.status, 403);

    let manager = ConsoleSession::sign_in(&server, MANAGER).await;
    let list = manager.get("/console/leads").await;
    assert!(list.body.contains(&alices) && list.body.contains(&danas));
    assert!(
        !list.body.contains(&emea),
        "the EMEA lead is another team's"
    );
    assert_eq!(
        manager.get(&format!("/console/leads/{emea}")).await.status,
        404
    );

    let operator = ConsoleSession::sign_in(&server, OPERATOR).await;
    let list = operator.get("/console/leads").await;
    for id in [&alices, &danas, &emea] {
        assert!(list.body.contains(id.as_str()));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rep_claims_from_the_console_and_the_claim_is_audited() {
    let server = Server::start().await;
    let first = routed(
        &server,
        "evt-claim-1",
        &lead_at("maple-software.ca", "Ann Americas"),
    )
    .await;
    let second = routed(
        &server,
        "evt-claim-2",
        &lead_at("maple-software.ca", "Bob Americas"),
    )
    .await;
    let alices = if owner(&server, &first).await == "alice" {
        first
    } else {
        second
    };
    let alice = ConsoleSession::sign_in(&server, ALICE).await;
    let page = alice.get(&format!("/console/leads/{alices}")).await;
    assert!(page.body.contains("Claim this lead"));
    assert!(
        page.body.contains("data-due="),
        "the SLA clock ticks in the page"
    );
    // The alert's receipts (the terminal channel delivered it) and its text.
    let receipts = server
        .db
        .delivery_receipts(&alices)
        .await
        .expect("receipts");
    assert!(!receipts.is_empty() && receipts.iter().all(|r| r.delivered_at.is_some()));
    for receipt in &receipts {
        assert!(page
            .body
            .contains(&format!("<code>{}</code>", receipt.channel)));
    }
    assert!(page.body.contains("Delivery receipts") && page.body.contains("delivered"));
    assert!(page.body.contains("The alert as its text version reads"));

    let claimed = alice
        .post(&format!("/console/leads/{alices}/claim"), &[])
        .await;
    assert_eq!(claimed.status, 303);
    assert_eq!(
        claimed.location.as_deref(),
        Some(format!("/console/leads/{alices}?done=claimed").as_str())
    );
    let lead = server
        .db
        .get_lead(&alices)
        .await
        .expect("read")
        .expect("lead");
    assert_eq!(lead.state, LeadState::Claimed);
    let claim = lead.claim.expect("claim");
    assert_eq!(
        (claim.rep.as_str(), claim.via.as_str()),
        ("alice", "console")
    );
    let page = alice
        .get(&format!("/console/leads/{alices}?done=claimed"))
        .await;
    assert!(page.body.contains("claimed by alice via console"));
    let audit = server
        .db
        .actions_since(Timestamp::now() - jiff::SignedDuration::from_mins(5), 50)
        .await
        .expect("audit");
    assert!(audit
        .iter()
        .any(|a| a.action == "claim" && a.target == alices && a.detail == "claimed"));
    server.stop().await;
}

#[tokio::test]
async fn a_forged_or_missing_csrf_token_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let manager = ConsoleSession::sign_in(&server, MANAGER).await;
    let counter = away_until_counter("dana");
    for fields in [
        vec![("until", "2099-01-01")],
        vec![("until", "2099-01-01"), ("csrf", "0000")],
        vec![("until", "2099-01-01"), ("csrf", "")],
    ] {
        let answer = manager.post_raw("/console/people/dana/away", &fields).await;
        assert_eq!(answer.status, 403, "{fields:?}");
        assert!(answer
            .body
            .contains("did not come from your current session"));
    }
    // Another session's token is not this session's.
    let operator = ConsoleSession::sign_in(&server, OPERATOR).await;
    let foreign = operator.csrf().await;
    let answer = manager
        .post_raw(
            "/console/people/dana/away",
            &[("until", "2099-01-01"), ("csrf", foreign.as_str())],
        )
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(server.db.counter(&counter).await.expect("counter"), 0);
    server.stop().await;
}

#[tokio::test]
async fn out_of_office_set_in_the_console_sends_the_next_lead_past_that_rep() {
    let server = Server::start().await;
    let manager = ConsoleSession::sign_in(&server, MANAGER).await;
    // A manager sets a rep of their team away; not a rep of another team.
    let until = (Timestamp::now() + jiff::SignedDuration::from_hours(24 * 3))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let set = manager
        .post("/console/people/alice/away", &[("until", until.as_str())])
        .await;
    assert_eq!(set.status, 303, "{}", set.body);
    assert!(
        server
            .db
            .counter(&away_until_counter("alice"))
            .await
            .expect("counter")
            > 0
    );
    let refused = manager
        .post("/console/people/bruno/away", &[("until", until.as_str())])
        .await;
    assert_eq!(refused.status, 403);
    let past = manager
        .post("/console/people/dana/away", &[("until", "2001-01-01")])
        .await;
    assert_eq!(past.status, 400);
    assert!(past.body.contains("has passed"));

    // The next Americas lead goes to dana, and the trace says why alice was skipped.
    let id = routed(
        &server,
        "evt-away",
        &lead_at("acme-robotics.com", "Away Test"),
    )
    .await;
    assert_eq!(owner(&server, &id).await, "dana");
    let page = ConsoleSession::sign_in(&server, OPERATOR)
        .await
        .get(&format!("/console/leads/{id}"))
        .await;
    assert!(
        page.body.contains("out of office until") && page.body.contains("(set in the console)"),
        "the candidates say why alice was skipped"
    );
    let people = manager.get("/console/people").await;
    assert!(people.body.contains("Away until"));

    // Back: alice takes the next lead (her turn, now that dana has had one).
    let back = manager.post("/console/people/alice/back", &[]).await;
    assert_eq!(back.status, 303);
    assert_eq!(
        server
            .db
            .counter(&away_until_counter("alice"))
            .await
            .expect("counter"),
        0
    );
    let id = routed(
        &server,
        "evt-back",
        &lead_at("maple-software.ca", "Back Test"),
    )
    .await;
    assert_eq!(owner(&server, &id).await, "alice");

    let audit = server
        .db
        .actions_since(Timestamp::now() - jiff::SignedDuration::from_mins(5), 50)
        .await
        .expect("audit");
    assert!(audit
        .iter()
        .any(|a| a.action == "away" && a.target == "alice" && a.login == MANAGER.0));
    assert!(audit
        .iter()
        .any(|a| a.action == "back" && a.target == "alice"));
    server.stop().await;
}

#[tokio::test]
async fn an_operator_reroutes_and_closes_a_lead_and_each_action_is_kept() {
    let server = Server::start().await;
    let id = routed(
        &server,
        "evt-ops-1",
        &lead_at("initech.co.uk", "Eve Europe"),
    )
    .await;
    let before = owner(&server, &id).await;
    let operator = ConsoleSession::sign_in(&server, OPERATOR).await;
    let empty = operator
        .post(&format!("/console/leads/{id}/reroute"), &[("reason", "  ")])
        .await;
    assert_eq!(empty.status, 400, "a reason is required");
    let rerouted = operator
        .post(
            &format!("/console/leads/{id}/reroute"),
            &[("reason", "wrong territory")],
        )
        .await;
    assert_eq!(rerouted.status, 303, "{}", rerouted.body);
    let lead = eventually(Duration::from_secs(10), "re-routed and alerted", || async {
        let lead = server.db.get_lead(&id).await.ok()??;
        (lead.state == LeadState::Notified && !lead.reroutes.is_empty()).then_some(lead)
    })
    .await;
    let reroute = &lead.reroutes[0];
    assert_eq!(
        (reroute.by.as_str(), reroute.reason.as_str()),
        (OPERATOR.0, "wrong territory")
    );
    assert_eq!(reroute.from, format!("rep:{before}"));
    assert!(
        lead.misroutes.is_empty(),
        "no rule is blamed for an operator's re-route"
    );
    assert!(
        lead.alert_round().starts_with("re1:"),
        "the new owner is alerted as a new round"
    );

    let closed = operator
        .post(
            &format!("/console/leads/{id}/close"),
            &[("outcome", "disqualified")],
        )
        .await;
    assert_eq!(closed.status, 303);
    let lead = server.db.get_lead(&id).await.expect("read").expect("lead");
    assert_eq!(lead.state, LeadState::Closed);
    assert_eq!(lead.close_reason.as_deref(), Some("disqualified"));
    let bad = operator
        .post(
            &format!("/console/leads/{id}/close"),
            &[("outcome", "vanished")],
        )
        .await;
    assert_eq!(bad.status, 400);

    let audit = server
        .db
        .actions_since(Timestamp::now() - jiff::SignedDuration::from_mins(5), 50)
        .await
        .expect("audit");
    assert!(audit
        .iter()
        .any(|a| a.action == "reroute" && a.target == id));
    assert!(audit
        .iter()
        .any(|a| a.action == "close" && a.target == id && a.detail == "disqualified"));
    server.stop().await;
}

#[tokio::test]
async fn prospect_text_is_escaped_on_every_console_page() {
    let server = Server::start().await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let id = routed(&server, "evt-xss", &lead_at("maple-software.ca", hostile)).await;
    let operator = ConsoleSession::sign_in(&server, OPERATOR).await;
    for path in [
        "/console/leads".to_owned(),
        "/console/leads/rows".to_owned(),
        format!("/console/leads/{id}"),
    ] {
        let page = operator.get(&path).await;
        assert_eq!(page.status, 200);
        assert!(
            !page.body.contains("<script>alert"),
            "{path} carries raw script"
        );
        assert!(
            !page.body.contains("<img src=x"),
            "{path} carries a raw tag"
        );
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn without_a_console_section_there_is_no_console() {
    let config = example_config();
    let start = config
        .find("\n[console]")
        .expect("a [console] section in the example");
    let server = Server::start_with(&config[..start]).await;
    let http = crate::support::console::no_redirects();
    for path in ["/console", "/console/login", "/console/leads"] {
        let answer = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("get");
        assert_eq!(answer.status(), 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_login_page_carries_where_to_go_next_and_a_fresh_token() {
    let server = Server::start().await;
    let page = crate::support::console::no_redirects()
        .get(format!(
            "{}/console/login?next=%2Fconsole%2Fpeople",
            server.base
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert_eq!(hidden(&page, "next").as_deref(), Some("/console/people"));
    assert_eq!(hidden(&page, "login_csrf").map(|t| t.len()), Some(64));
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_sign_in_is_refused_and_unknown_logins_lock_nobody() {
    let server = Server::start().await;
    let huge = "x".repeat(20 * 1024);
    let answer = sign_in_form(&server.base, &huge, "whatever", "/console").await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("larger than 16 KiB"));
    // Six failures for a login nobody has lock nothing (there is nothing to lock) and, with a
    // look-alike of a real login (Cyrillic "о"), do not lock the real one either.
    for _ in 0..6 {
        let answer = sign_in_form(&server.base, "\u{43e}ps@yourco.example", OPERATOR.1, "/").await;
        assert_eq!(answer.status, 401);
    }
    ConsoleSession::sign_in(&server, OPERATOR).await;
    server.stop().await;
}
