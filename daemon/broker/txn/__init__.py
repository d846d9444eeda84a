"""Transactions (KIP-98): the transaction coordinator and the records it keeps in the
internal topic __transaction_state.

    coordinator.py      TransactionCoordinator: the sans-IO state machine and its rules
    state.py            TxnState, TxnMetadata, TxnTransit: one transactional id, its transitions
    markers.py          writing a transaction's markers, then its Complete record
    views.py            DescribeTransactions, ListTransactions
    transaction_log.py  __transaction_state keys and values, Kafka's byte layouts (FORMAT.md)
    config.py           TxnConfig and TXN_CONFIGS: the coordinator's broker settings
    effects.py          Reply / Persist / WriteMarkers / Note (what the loop must do)
"""
from odradek.daemon.broker.txn.config import TXN_CONFIGS, TxnConfig
from odradek.daemon.broker.txn.coordinator import TransactionCoordinator
from odradek.daemon.broker.txn.effects import Note, Persist, Reply, WriteMarkers
from odradek.daemon.broker.txn.state import TxnMetadata, TxnState

TXN_TOPIC = "__transaction_state"

__all__ = ["TransactionCoordinator", "TxnConfig", "TXN_CONFIGS", "TxnMetadata", "TxnState", "Reply", "Persist",
           "WriteMarkers", "Note", "TXN_TOPIC"]
