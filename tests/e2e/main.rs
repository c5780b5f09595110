//! The end-to-end suite, written once against a base URL and run against each runtime that
//! serves the API: the `mcp-edge` runtime (the WASI components on wasmtime) and Cloudflare
//! Workers (the Worker under `wrangler dev --local`). Every scenario is a test per runtime; a
//! behaviour difference between them fails one of the two.

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod api;
mod bundle;
mod concurrency;
mod cron;
mod deployment;
mod docs_tree;
mod integrity;
mod limits;
mod mcp;
mod members;
mod object_calls;
mod openapi;
mod push;
mod wrangler;

/// One `#[test]` per runtime for each scenario: `<scenario>::runtime` and `<scenario>::workers`.
macro_rules! on_every_runtime {
    ($($module:ident :: $scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::deployment::Kind;

            #[test]
            fn runtime() {
                crate::$module::$scenario(Kind::Runtime);
            }

            #[test]
            fn workers() {
                crate::$module::$scenario(Kind::Workers);
            }
        }
    )*};
}

on_every_runtime!(
    api::full_flow_two_clients_exchange_messages_and_acknowledge,
    api::auth_errors_are_401_and_403_with_json_bodies,
    api::validation_errors_are_4xx_never_5xx,
    api::bodies_over_the_cap_get_413,
    api::docs_are_versioned_cacheable_and_confined,
    docs_tree::the_fixture_tree_renders_right_page_by_page,
    api::health_request_ids_and_security_headers,
    concurrency::concurrent_senders_and_receivers_lose_and_duplicate_nothing,
    cron::scheduled_cleanup_expires_stale_clients_and_old_messages_only,
    limits::an_address_over_its_budget_gets_429_with_retry_after,
    limits::failed_logins_lock_out_one_address_and_spread_guessing_but_never_the_user_elsewhere,
    limits::group_size_message_size_and_backlog_limits_are_clear_4xx,
    limits::a_group_of_a_thousand_is_full_at_a_thousand,
    integrity::a_large_backlog_is_received_in_pages_exactly_once,
    integrity::many_groups_at_a_bucket_boundary_are_all_accepted_once,
    integrity::a_full_group_under_concurrent_sends_and_cleanup_never_wedges,
    integrity::retries_with_an_idempotency_key_store_once,
    members::a_member_back_from_a_quiet_spell_gets_what_was_sent_meanwhile,
    members::a_trim_by_the_cap_is_reported_as_missed,
    members::a_return_after_the_retention_reports_everything_missed,
    accounts::refresh_tokens_rotate_and_a_reused_one_revokes_the_session,
    accounts::logout_ends_the_session,
    accounts::api_keys_act_until_revoked,
    accounts::an_admin_adds_disables_and_removes_users,
    accounts::tokens_signed_with_a_previous_key_verify_until_it_is_removed,
    mcp::an_mcp_client_searches_reads_and_sends_exactly_once,
    push::a_wait_wakes_on_a_send_and_the_stream_delivers_in_order,
    openapi::the_document_is_served_public_cacheable_with_an_etag,
    openapi::schemathesis_finds_no_failures,
);
