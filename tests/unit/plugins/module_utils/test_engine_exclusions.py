# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""exclude_table_data: which tables a list of names means, and which choices a restore could not load."""

from __future__ import annotations

import sys

import pytest

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (  # noqa: E402
    EngineError, excluded_stats, resolve_excluded_tables)

# PostgreSQL-like: keys schema.table, also spelt by the bare table name
SPELLINGS = {
    'public.django_session': ('public.django_session', 'django_session'),
    'public.log': ('public.log', 'log'),
    'audit.log': ('audit.log', 'log'),
    'public.customer': ('public.customer', 'customer'),
    'public.order': ('public.order', 'order'),
    'public.order_item': ('public.order_item', 'order_item'),
}
KEYS = (
    ('public.order', 'foreign key order_customer_fk', 'public.customer'),
    ('public.order_item', 'foreign key item_order_fk', 'public.order'),
    ('public.order', 'foreign key order_parent_fk', 'public.order'),  # self-reference
)


def resolve(names):
    return resolve_excluded_tables(names, SPELLINGS, KEYS, 'database shop')


def test_names_resolve_to_keys_in_the_order_given_without_repeats():
    assert resolve(['django_session', 'audit.log', 'public.django_session']) == ['public.django_session', 'audit.log']
    assert resolve([]) == []


def test_a_key_always_means_its_own_table():
    assert resolve(['public.log']) == ['public.log']


@pytest.mark.parametrize('names, message', [
    (['nosuch'], 'exclude_table_data: there is no table nosuch in database shop'),
    (['Django_Session'], 'there is no table Django_Session in database shop'),
    (['log'], 'exclude_table_data: log names 2 tables in database shop (audit.log, public.log); name the one meant'),
    ([''], "exclude_table_data: '' is not a table name"),
    (['  '], 'is not a table name'),
])
def test_bad_names_are_refused_by_name(names, message):
    with pytest.raises(EngineError) as e:
        resolve(names)
    assert message in str(e.value)


def test_a_table_referenced_by_a_kept_one_is_refused():
    with pytest.raises(EngineError) as e:
        resolve(['customer'])
    assert str(e.value) == (
        'exclude_table_data: the rows of public.customer are referenced by foreign key order_customer_fk of '
        'public.order, whose rows are kept, so restoring the snapshot would fail on that key; leave out the rows '
        'of public.order too, or keep those of public.customer')
    with pytest.raises(EngineError) as e:
        resolve(['customer', 'order'])
    assert 'the rows of public.order are referenced by foreign key item_order_fk of public.order_item' in str(e.value)


def test_a_chain_left_out_together_and_self_references_are_fine():
    assert resolve(['customer', 'order', 'order_item']) == ['public.customer', 'public.order', 'public.order_item']
    assert resolve(['order_item']) == ['public.order_item']


def test_what_is_recorded_for_a_table_left_out():
    assert excluded_stats('counts') == {'rows': 0, 'checksum': None, 'data_excluded': True}
    assert excluded_stats('checksums') == {'rows': 0, 'checksum': '0000000000000000', 'data_excluded': True}
