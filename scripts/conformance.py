"""Writes docs/conformance.md from the RFC 9293 requirement table and the answers below.

Run: python scripts/conformance.py > docs/conformance.md (from the project root; the table of RFC 9293
Appendix B is kept in docs/reference/rfc9293-appendix-b.md)
Each answer is (where it is implemented, which test proves it); "open" marks a row not yet answered.
"""

from __future__ import annotations

import sys

S = "tests/core/test_segments.py::"
SC = "tests/core/test_scenarios.py::"
P = "tests/core/test_properties.py::"
W = "tests/wire/test_tcp.py::"
POOL = "tests/core/test_pool.py::"
ISN = "tests/core/test_isn.py::"
NG = "tests/core/test_nagle.py::"
DA = "tests/core/test_delayed_ack.py::"
KA = "tests/core/test_keepalive.py::"
KAK = "tests/interop/test_keepalive_kernel.py::"
K = "tests/interop/test_stack_kernel.py::"
SC2 = "tests/core/test_segments_calls.py::"
SACK = "tests/core/test_sack.py::"
HARD = "tests/core/test_hardening.py::"
ICMP = "tests/core/test_icmp_errors.py::"
IPIN = "tests/unit/test_ip_input.py::"
SR = "tests/unit/test_source_route.py::"
HOST = "tests/interop/test_hostile.py::"
CC = "tests/core/test_cc_tcb.py::"
TCB = "stack/tcp/tcb.py"
OPEN = ("open", "open")

ANSWERS: dict[str, tuple[str, str]] = {
    "MUST-31": (f"{TCB} `Tcb._emit`: any length; the pointer says 0xFFFF until the exact offset fits in 16 bits", f"{HARD}test_urgent_pointer_beyond_16_bits_is_0xffff_then_exact"),
    "MUST-33": (f"{TCB} `TcbStatus.urgent_pending`: urgent octets not yet read; shown by `status ID`", f"{HARD}test_urgent_data_end_to_end_is_told_and_counted_until_read"),
    "SHLD-13": ("choice: urgent data is sent only when the user asks (`send --urgent`), to drive peers that use it; nothing in tcpsh uses it otherwise", f"{SC2}test_send_urgent_sets_snd_up_and_urgent_pointer"),
    "SHLD-6": (f"{TCB} `Tcb._path_mtu_lowered`, `Tcb.eff_snd_mss` from the path MTU (RFC 1191)", f"{ICMP}test_fragmentation_needed_lowers_the_mss_and_sends_again_at_once, {HOST}test_fragmentation_needed_lowers_the_segment_size_in_the_middle_of_an_upload"),
    "SHLD-2": (f"{TCB} `Tcb._arrives_other`: a RST is processed whatever it carries; its data is ignored", f"{HARD}test_a_rst_carrying_data_resets_all_the_same"),
    "SHLD-3": ("not applicable: CLOSE is a half-close here (MAY-1 taken as RFC 9293 3.10.4 describes it: the user keeps reading), so no data is ever left unread by a close", "-"),
    "MAY-2": ("choice: not implemented; a SYN for a connection in TIME-WAIT gets a challenge ACK (RFC 5961 section 4) and TIME-WAIT lasts one minute (MSL 30 s)", f"{S}test_syn_in_synchronized_state_gets_challenge_ack"),
    "SHLD-4": ("not applicable: MAY-2 is not implemented, so timestamps have no TIME-WAIT to shorten", "-"),
    "MAY-10": ("choice: the IP timestamp option is neither sent nor acted on; received ones are ignored (MUST-50)", f"{IPIN}test_ip_options_are_ignored_by_tcp_must_50"),
    "MAY-11": ("choice: record route is neither sent nor acted on (received ones ignored, MUST-50); source routes are (rows below)", f"{IPIN}test_ip_options_are_ignored_by_tcp_must_50"),
    "MUST-51": ("stack/host.py `Pool.open_active(route=)`, stack/runtime.py `Stack._emit` (loose source route option); shell `open --source-route`", f"{SR}test_an_active_open_with_a_source_route_sends_every_datagram_by_it"),
    "MUST-52": ("stack/host.py `Conn.route_given`, `_take_route`: the user's route stands", f"{SR}test_a_route_the_user_gave_overrides_one_that_arrives"),
    "MUST-53": ("stack/runtime.py `Stack._input_tcp` (recorded route reversed), stack/host.py `_take_route`", f"{SR}test_a_syn_that_came_by_a_source_route_is_answered_by_the_reverse_route"),
    "SHLD-24": ("stack/host.py `_take_route`: each completed route that arrives replaces the last", f"{SR}test_a_route_the_user_gave_overrides_one_that_arrives"),
    "MUST-54": ("stack/runtime.py `Stack._input_icmp` -> stack/host.py `Pool.icmp_error` -> `Tcb.icmp_error`, believed only if the quoted sequence number is in flight (RFC 5927)", f"{IPIN}test_icmp_errors_go_to_the_pool, {ICMP}test_an_error_quoting_nothing_in_flight_is_not_believed"),
    "SHLD-25": (f"{TCB} `Tcb.icmp_error`: `EventKind.NETWORK_ERROR`, a news line in the shell, kept for a timeout's message", f"{ICMP}test_soft_errors_are_reported_and_the_connection_goes_on, {ICMP}test_a_connection_that_times_out_after_a_soft_error_says_so"),
    "SHLD-26": (f"{TCB} `Tcb.icmp_error`: codes 2 and 3 abort; code 4 (fragmentation needed) lowers the path MTU instead (RFC 1191), as every TCP does", f"{ICMP}test_protocol_or_port_unreachable_aborts_the_connection, {ICMP}test_fragmentation_needed_lowers_the_mss_and_sends_again_at_once, {HOST}test_port_unreachable_quoting_data_in_flight_aborts_the_connection"),
    "MUST-55": ("stack/host.py `Pool.icmp_error`: source quench dropped", f"{ICMP}test_source_quench_redirect_and_errors_for_no_connection_are_ignored"),
    "SHLD-20": ("stack/tcp/config.py `icmp_reports` (`set ID icmp-reports off`)", f"{ICMP}test_the_user_can_turn_soft_error_reports_off"),
    "MUST-48": ("stack/tcp/config.py `dscp` per connection (`set ID dscp N`), passed to IP by `Pool._apply` and `Stack._emit`", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "SHLD-22": ("stack/runtime.py `Stack._emit`: the DSCP given is written unchanged", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "SHLD-21": ("`set ID dscp N` on a live connection", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "SHLD-23": ("choice: tcpsh lets the user change it at any time (it is a tool for testing peers); nothing changes it unasked", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "MAY-9": ("stack/host.py `Conn.dscp_in`: the DSCP of the last segment received, in `status ID`", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "MUST-43": ("stack/host.py `Pool.open_active(local_addr=)`: the stack's one address, else an error; shell `open --local`", f"{POOL}test_open_takes_the_local_address_only_if_it_is_the_stacks"),
    "SHLD-8": ("choice: ECN is not negotiated. The lab has no ECN-marking queue (this kernel has no netem and no AQM to set CE), so the response to a mark could not be proven against Linux; RFC 3168 negotiation without that would be untested code", "-"),
    "MAY-16": (f"{TCB} `Tcb._send_data`: data is sent as the windows allow, never held for PSH", f"{S}test_text_without_push_is_delivered_without_push"),
    "SHLD-27": (f"{TCB} `Tcb._send_data`: PSH only on the segment that empties the queue", f"{SC}test_one_megabyte_each_way"),
    "MAY-15": (f"{TCB} `Tcb.send(push=)`; shell `send --push`", f"{S}test_established_text_is_delivered_and_acked"),
    "MUST-60": (f"{TCB} `Tcb._send_data`: queued data goes out as the window allows, never waits for more", f"{SC}test_one_megabyte_each_way"),
    "MUST-61": (f"{TCB} `Tcb._send_data`: the last segment of queued data carries PSH", f"{S}test_established_text_is_delivered_and_acked"),
    "MAY-17": (f"{TCB} `Tcb.receive` returns `Result.push`", f"{S}test_text_without_push_is_delivered_without_push"),
    "SHLD-28": (f"{TCB} `Tcb._send_data`: segments of Eff.snd.MSS while data and window allow", f"{SC}test_one_megabyte_each_way"),
    "MUST-1": ("stack/tcp/seq.py (modular arithmetic); windows kept as unsigned ints in stack/wire/tcp.py", f"{SC}test_sequence_numbers_wrap_around_2_to_the_32"),
    "REC-1": (f"{TCB}: SND.WND and RCV.WND are plain ints, scaled by RFC 7323 window scale past 16 bits", "tests/core/test_rfc7323.py::test_large_windows_carry_a_transfer_through_loss_and_reordering"),
    "SHLD-14": (f"{TCB} `Tcb._window_to_advertise` never moves the right edge left", f"{S}test_receive_window_right_edge_never_moves_left"),
    "SHLD-15": (f"{TCB} `Tcb._send_data`: usable window <= 0 sends nothing new", f"{SC2}test_window_shrunk_to_zero_is_probed"),
    "SHLD-16": (f"{TCB} `Tcb._retransmission_timeout`: go-back-N from SND.UNA within the window", f"{SC}test_lost_data_segment_is_retransmitted"),
    "SHLD-17": (f"{TCB} `Tcb._arrives_other`: an answer while the window is zero restarts R1/R2", f"{SC2}test_zero_window_connection_stays_open_while_probes_are_answered"),
    "MUST-34": (f"{TCB} `Tcb._send_data`, `Tcb._retransmission_timeout` (a shrunk window stops new data and is probed)", f"{SC2}test_window_shrunk_to_zero_is_probed"),
    "MAY-8": (f"{TCB}: a zero window is kept as long as the user does not read; the peer is answered", f"{SC}test_zero_window_is_probed_while_the_reader_stalls"),
    "MUST-35": (f"{TCB} `Tcb._retransmission_timeout`: one-octet probe into a shrunk window", f"{SC2}test_window_shrunk_to_zero_is_probed"),
    "MUST-36": (f"{TCB} `Tcb._update_persist`, the persist timer in `Tcb.on_timer`", f"{SC2}test_zero_send_window_is_probed, {SC}test_lost_window_update_is_recovered_by_probing"),
    "SHLD-29": (f"{TCB} `Tcb._update_persist`: first probe after one RTO", f"{SC2}test_zero_send_window_is_probed"),
    "SHLD-30": (f"{TCB} `Tcb._update_persist` and the retransmission backoff", f"{SC}test_zero_window_is_probed_while_the_reader_stalls"),
    "MUST-37": (f"{TCB} `Tcb._arrives_other`: answered probes keep the connection open", f"{SC2}test_zero_window_connection_stays_open_while_probes_are_answered"),
    "MAY-7": (f"{TCB} `Tcb._send_data(probe=True)`: the probe octet lies beyond SND.UNA+SND.WND", f"{SC2}test_window_shrunk_to_zero_is_probed"),
    "MUST-66": (f"{TCB} `Tcb._arrives_other`, first step: zero-window allowance for ACK, URG, RST", f"{S}test_zero_window_rst_at_rcv_nxt_resets, {S}test_zero_window_urg_is_processed"),
    "MUST-30": (f"{TCB} `Tcb._process_text_and_fin`, sixth step (receiving); `Tcb.send(urgent=)`, `Tcb._emit` (sending); shell `send --urgent`", f"{S}test_urg_updates_rcv_up_and_signals_once, {SC2}test_send_urgent_sets_snd_up_and_urgent_pointer, {HARD}test_urgent_data_end_to_end_is_told_and_counted_until_read"),
    "MUST-62": (f"{TCB} `Tcb._process_text_and_fin`: RCV.UP = SEG.SEQ + SEG.UP, the first non-urgent octet", f"{S}test_urg_updates_rcv_up_and_signals_once"),
    "MUST-32": (f"{TCB}: `EventKind.URGENT` signalled once per urgent sequence", f"{S}test_urg_updates_rcv_up_and_signals_once"),
    "MUST-4": ("stack/wire/tcp.py `parse_options`, `build_options` (EOL, NOP, MSS)", f"{W}test_eol_ends_the_list, {W}test_linux_syn_parsed_field_by_field"),
    "MUST-5": ("stack/wire/tcp.py `parse_tcp` reads options on every segment", f"{W}test_linux_data_segment_with_timestamps_and_sack"),
    "MUST-6": ("stack/wire/tcp.py `parse_options`: unknown kinds skipped by length", f"{W}test_must6_unknown_option_skipped_by_length_and_recorded"),
    "MUST-68": ("stack/wire/tcp.py `build_options`: every option but EOL/NOP has its length", f"{W}test_build_options_layout"),
    "MUST-7": ("stack/wire/tcp.py `parse_options`: illegal length stops parsing, `malformed=True`; the TCB counts it", f"{W}test_must7_illegal_length_never_raises, {W}test_must7_worst_cases_terminate"),
    "MUST-64": ("stack/wire/tcp.py `parse_options` reads octet by octet", f"{W}test_must64_options_at_odd_alignment"),
    "MUST-14": (f"{TCB} `Tcb._syn_options` (send), `Tcb._synchronize_receive` (receive)", f"{S}test_listen_syn_mss_option_sets_send_mss, {S}test_syn_sent_reads_mss_option"),
    "SHLD-5": (f"{TCB} `Tcb._syn_options`: MSS option on every SYN (IPv4); IPv6: not applicable, the stack is IPv4 only", f"{S}test_open_active_sends_syn"),
    "MAY-3": (f"{TCB} `Tcb._syn_options`: always sent", f"{S}test_open_active_sends_syn"),
    "MUST-15": (f"{TCB} `DEFAULT_SEND_MSS = 536` (IPv4); IPv6: not applicable, the stack is IPv4 only", f"{S}test_syn_sent_reads_mss_option"),
    "MUST-16": (f"{TCB} `Tcb.eff_snd_mss`", f"{S}test_listen_syn_mss_option_sets_send_mss"),
    "MUST-65": (f"{TCB} `Tcb._emit`: options only from `_syn_options` on SYNs", f"{P}test_exact_stream_both_ways_and_clean_close"),
    "MUST-67": ("stack/tcp/config.py `TcbConfig.mss_to_advertise` = MTU - 40 = MMS_R - 20", f"{S}test_open_active_sends_syn"),
    "MUST-69": ("stack/wire/tcp.py `build_options` pads with zeros", f"{W}test_must69_padding_is_zeros"),
    "MUST-2": ("stack/wire/tcp.py `build_tcp`, stack/wire/checksum.py", f"tests/wire/test_oracle.py::test_dpkt_reads_our_tcp, {K}test_capture_of_a_clean_session"),
    "MUST-3": ("stack/wire/tcp.py `parse_tcp(src, dst)`; stack/runtime.py checks every segment whose checksum the link did not vouch for", f"{W}test_single_flipped_bit_is_detected, {K}test_bad_packets_do_not_stop_the_receive_thread"),
    "MUST-8": ("stack/tcp/isn.py `Rfc6528Isn`: M, a 4 us clock", f"{ISN}test_isn_advances_with_a_4_microsecond_clock"),
    "SHLD-1": ("stack/tcp/isn.py `Rfc6528Isn`: keyed BLAKE2b of the 4-tuple (RFC 6528)", f"{ISN}test_isn_depends_on_every_part_of_the_four_tuple"),
    "MUST-9": ("stack/tcp/isn.py: 16-byte random key per stack, never exposed", f"{ISN}test_isn_cannot_be_predicted_without_the_key"),
    "MUST-10": (f"{TCB} `Tcb._arrives_syn_sent`, fourth step", f"{SC}test_simultaneous_open_figure_7"),
    "MUST-11": (f"{TCB} `Tcb.from_listen`", f"{S}test_syn_received_from_listen_rst_returns_to_listen, {S}test_syn_received_from_syn_sent_rst_refuses"),
    "MUST-41": ("stack/host.py `Pool._listener_for`: each passive OPEN is its own TCB", f"{POOL}test_several_listens_on_one_port_most_specific_first"),
    "MUST-42": ("stack/host.py `Pool.open_passive`, `Pool._listener_for`", f"{POOL}test_several_listens_on_one_port_most_specific_first"),
    "MUST-44": ("stack/host.py: the stack has one address of its own and uses it as the source of every SYN", f"{K}test_echo_round_trip"),
    "MUST-45": ("stack/host.py `Pool._new`: the TCB's local address is the stack's address", f"{K}test_curl_fetches_from_a_passive_open"),
    "MUST-46": ("stack/host.py `Pool.open_active`", f"{POOL}test_open_to_broadcast_or_multicast_is_refused"),
    "MUST-57": ("stack/link/raw.py: BPF filter on the stack's unicast address and PACKET_HOST only", "tests/interop/test_link_filter.py::test_syns_to_broadcast_or_multicast_addresses_are_silently_discarded"),
    "MUST-12": (f"{TCB} `Tcb._reset_by_peer`, `Tcb._retransmission_timeout`: RESET, REFUSED, TIMED_OUT events; shell news lines", f"{SC}test_rst_arriving_in_each_state, {K}test_kernel_reset_is_reported_to_the_user, {K}test_open_to_closed_port_is_refused"),
    "MAY-1": (f"{TCB} `Tcb.close`: FIN-WAIT-1/2 keep receiving", f"{SC}test_half_close_peer_keeps_sending_into_fin_wait_2, {K}test_stack_closes_first_and_still_receives_in_fin_wait_2"),
    "MUST-13": (f"{TCB} `Tcb._start_time_wait`: 2*MSL, MSL in TcbConfig", f"{SC}test_active_close_figure_12_and_time_wait_lasts_2_msl, {K}test_time_wait_acknowledges_a_retransmitted_fin"),
    "MUST-19": ("stack/tcp/rto.py (exponential backoff), stack/tcp/congestion.py `Reno` and `Cubic` (slow start, congestion avoidance, fast recovery), stack/tcp/sack.py (RFC 6675 recovery)", f"{SC}test_r2_gives_up_on_data_with_exponential_backoff, tests/core/test_recovery.py::test_third_duplicate_ack_retransmits_exactly_the_first_unacked_segment, {K}test_three_duplicate_acks_bring_a_fast_retransmit, {CC}test_rto_collapses_cwnd_to_one_segment_and_sends_one, {SACK}test_three_losses_in_one_window_are_repaired_in_one_recovery_without_resending_sacked_data"),
    "MAY-4": ("not done: each datagram gets a new IP identification", "-"),
    "MUST-18": (f"{TCB} `Tcb._transmit`, `Tcb._transmit_syn`, `Tcb._resend`: no RTT sample from a retransmitted segment", f"{SC2}test_karn_no_rtt_sample_from_retransmitted_segment"),
    "MUST-58": (f"{TCB} `Tcb._output`: one ACK per event, piggybacked on data; delayed ACKs aggregate further", f"{S}test_established_text_is_delivered_and_acked, {DA}test_half_as_many_acks_for_a_stream"),
    "SHLD-31": (f"{TCB} `Tcb._ooo_insert`, `Tcb._drain_ooo`", f"{S}test_out_of_order_text_is_held_and_duplicate_ack_sent_then_delivered"),
    "MUST-59": (f"{TCB} `Tcb._drain_ooo`: all queued segments processed, then one ACK", f"{S}test_out_of_order_text_is_held_and_duplicate_ack_sent_then_delivered"),
    "MAY-13": (f"{TCB} `Tcb._process_text_and_fin`: duplicate ACK for out-of-order text", f"{S}test_out_of_order_text_is_held_and_duplicate_ack_sent_then_delivered"),
    "SHLD-18": (f"{TCB} `Tcb._process_text_and_fin`, the delayed ACK timer; on in `TcbConfig.full()`", f"{DA}test_a_lone_segment_is_acknowledged_within_the_delay"),
    "MUST-40": ("stack/tcp/config.py `ack_delay = 0.1`, refused at 0.5 s or more", f"{DA}test_a_lone_segment_is_acknowledged_within_the_delay, {DA}test_ack_delay_is_settable_but_stays_under_half_a_second"),
    "SHLD-19": (f"{TCB} `Tcb._process_text_and_fin`: ACK at once after two full-sized segments", f"{DA}test_every_second_full_sized_segment_is_acknowledged_at_once"),
    "MUST-39": (f"{TCB} `Tcb._window_to_advertise`: the right edge moves by min(RCV.BUFF/2, MSS) or more; `Tcb._window_update`", f"{SACK}test_receiver_opens_its_window_only_by_a_full_segment_at_a_time"),
    "MUST-49": ("stack/tcp/config.py `ttl` per connection (`set ID ttl N`), passed to IP by `Pool._apply` and `Stack._emit`", f"{POOL}test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them"),
    "MUST-38": (f"{TCB} `Tcb._send_new`: no segment short of the MSS, of what is queued and of half the largest window; the persist timer is the override", f"{SACK}test_sender_waits_for_the_window_to_open_rather_than_send_a_silly_segment"),
    "SHLD-7": (f"{TCB} `Tcb._send_data`: short segments wait while data is unacknowledged; on in `TcbConfig.full()`", f"{NG}test_small_segment_waits_while_data_is_unacknowledged, {NG}test_many_small_writes_become_few_segments_between_two_tcbs"),
    "MUST-17": ("stack/tcp/config.py `nagle`; shell `open --nodelay`, `set ID nagle off`", f"{NG}test_nagle_off_sends_at_once"),
    "MUST-20": (f"{TCB} `Tcb._retransmission_timeout`: R1 -> RETRANSMITTING event (no routing cache to advise), R2 -> TIMED_OUT", f"{SC}test_r2_gives_up_on_data_with_exponential_backoff"),
    "MUST-21": ("stack/tcp/config.py `TcbConfig.r2`, `r2_syn` per connection", f"{SC}test_r2_gives_up_on_data_with_exponential_backoff"),
    "SHLD-9": (f"{TCB} `EventKind.RETRANSMITTING` once per episode; shell news line", f"{SC2}test_r1_signals_retransmitting_once, {SC}test_r2_gives_up_on_data_with_exponential_backoff"),
    "SHLD-10": ("stack/tcp/config.py `r1 = 3` retransmissions", f"{SC2}test_r1_signals_retransmitting_once"),
    "SHLD-11": ("stack/tcp/config.py `r2 = 100` s", f"{SC}test_r2_gives_up_on_data_with_exponential_backoff"),
    "MUST-22": (f"{TCB} `Tcb._retransmission_timeout` covers the SYN", f"{SC}test_syn_to_a_silent_peer_gives_up_no_earlier_than_3_minutes"),
    "MUST-23": ("stack/tcp/config.py `r2_syn = 180` s", f"{SC}test_syn_to_a_silent_peer_gives_up_no_earlier_than_3_minutes"),
    "MAY-5": ("stack/tcp/tcb.py `Tcb._update_keepalive`, `Tcb._keepalive_timeout`", f"{KA}test_probe_after_idle_time_has_no_data_and_sits_one_below_snd_nxt, {KAK}test_linux_answers_probes_and_the_idle_connection_stays"),
    "MUST-24": ("stack/tcp/config.py `keepalive`; shell `set ID keepalive on`", f"{KA}test_set_turns_keepalive_on_for_one_connection_only"),
    "MUST-25": ("stack/tcp/config.py `keepalive = False`", f"{KA}test_keepalive_is_off_by_default_and_the_idle_time_at_least_two_hours"),
    "MUST-26": (f"{TCB} `Tcb._update_keepalive`: only when idle, nothing outstanding", f"{KA}test_no_probe_while_data_is_outstanding"),
    "MUST-27": ("stack/tcp/config.py `keepalive_idle`, `keepalive_interval`; shell `set`", f"{KA}test_set_turns_keepalive_on_for_one_connection_only"),
    "MUST-28": ("stack/tcp/config.py `keepalive_idle = 7200`", f"{KA}test_keepalive_is_off_by_default_and_the_idle_time_at_least_two_hours"),
    "MUST-29": (f"{TCB} `Tcb._keepalive_timeout`: keepalive_probes unanswered before giving up", f"{KA}test_unanswered_probes_are_repeated_before_giving_up, {KAK}test_unanswered_probes_end_the_connection"),
    "SHLD-12": (f"{TCB} `Tcb._keepalive_timeout`: no data unless asked", f"{KA}test_probe_after_idle_time_has_no_data_and_sits_one_below_snd_nxt"),
    "MAY-6": ("stack/tcp/config.py `keepalive_garbage`", f"{KA}test_garbage_octet_when_asked"),
    "MUST-50": ("stack/wire/ipv4.py `parse_ipv4` skips IP options (kept raw)", "tests/wire/test_ipv4.py::test_options_are_kept_raw_and_skipped"),
    "MUST-56": (f"{TCB} `Tcb.icmp_error`: destination unreachable 0, 1, 5 (and the other soft codes), time exceeded and parameter problem are reported, never abort", f"{ICMP}test_soft_errors_are_reported_and_the_connection_goes_on"),
    "MUST-63": ("stack/host.py `Pool.deliver` drops segments from broadcast/multicast sources", f"{POOL}test_syn_from_broadcast_or_multicast_source_is_dropped"),
    "MUST-47": ("stack/tcp/types.py `Result.error` (RFC error texts) and `Event`s; stack/runtime.py `StackError`", f"{S}test_rst_flushes_queues_and_later_calls_report_the_reset"),
    "MAY-14": (f"{TCB} `Tcb.flush`; shell `flush ID`", f"{SC2}test_flush_drops_data_right_of_the_send_window"),
    "MAY-12": (f"{TCB} `Tcb._arrives_other`, fifth step: SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT", f"{S}test_rfc5961_ack_too_old_gets_ack_and_is_dropped, {HOST}test_forged_resets_and_syns_do_not_break_a_transfer, {HOST}test_each_forgery_answered_as_rfc_5961_says_on_a_quiet_connection"),
    "MAY-18": ("stack/tcp/congestion.py: `Reno` and `Cubic` (RFC 9438) behind one interface; stack/tcp/sack.py: RFC 6675 recovery", f"{CC}test_the_algorithm_is_chosen_per_connection, {SACK}test_recovery_with_sack_is_quicker_than_newreno_alone_and_both_are_exact"),
}


def main(path: str) -> None:
    print("# RFC 9293 conformance\n")
    print("Every row of RFC 9293 Appendix B (the TCP requirement summary): where tcpsh implements it and the")
    print("test that proves it. `tests/core` runs the state machine in memory with a fake clock; `tests/wire` the")
    print('codecs. Rows marked "choice" or "not applicable" are deliberate, with the reason. Written by `scripts/conformance.py`.\n')
    print("| area | ID | level | requirement | implemented in | proven by |")
    print("|---|---|---|---|---|---|")
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        if not line.startswith("| ") or line.startswith("| area"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        impl, proof = ANSWERS.get(cells[1], OPEN)
        print("| " + " | ".join([*cells, impl, proof]) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/reference/rfc9293-appendix-b.md")
