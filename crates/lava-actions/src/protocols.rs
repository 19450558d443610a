//! Protocol blocks (`lava-multinode`, `lava-vland`, `lava-xnbd`): validation and the
//! parameters they add to actions.
